"""9. Watch: how soon a picture dropped into a watched folder is cleaned, and what a pass costs.

A folder of N done pairs (the no-op benchmark's tree, a copy of its own) is watched with the local
engine and ``--settle 1``. Measured from the watch's JSON events: the first pass (a walk over N done
items, nothing to do), then, for each new pair written into the folder, the seconds from the write to
its ``item_done`` event and the length of the pass that cleaned it, with the report (the default: a
watch writes it at most once a minute, so the first new pair's pass writes it and the next ones
do not) and with ``--no-report``, side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .common import WORK, median
from .noop_resume import build

SETTLE = 1.0


class Watching:
    """A watch process whose stderr events are collected by a thread."""

    def __init__(self, root: Path, out: Path, *extra: str) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("CLIPDROP_", "BATCH_INPAINT_"))}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "batch_inpaint", "watch", str(root / "photos"), "--masks", str(root / "masks"),
             "--out", str(out), "--engine", "local", "--settle", str(SETTLE), "--log-format", "json", *extra],
            env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.events: list[dict] = []
        self.started = time.time()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            event = json.loads(line)
            event["seen"] = time.time()
            self.events.append(event)

    def wait_for(self, predicate, timeout: float = 600):  # type: ignore[no-untyped-def]
        deadline = time.time() + timeout
        while time.time() < deadline:
            for event in list(self.events):
                if predicate(event):
                    return event
            if self.proc.poll() is not None:
                raise RuntimeError(f"watch ended: {self.events[-3:]}")
            time.sleep(0.02)
        raise RuntimeError("timed out")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)


def tree_copy(items: int) -> Path:
    """A copy of the no-op tree (its manifest says every pair is done), made afresh for each use."""
    source = Path(build(items))
    root = WORK / f"watch-{items}"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(source, root, symlinks=True)
    return root


def measure(items: int, drops: int, *extra: str) -> dict[str, object]:
    root = tree_copy(items)
    from batch_inpaint.synthetic import jpeg_bytes, png_bytes, scene

    watch = Watching(root, root / "out", *extra)
    first = watch.wait_for(lambda e: e["event"] == "run_ended")
    latencies, passes = [], []
    try:
        for n in range(drops):
            picture, mask = scene(640, 480, 100 + n)
            name = f"new/n{n}"
            (root / "masks" / "new").mkdir(parents=True, exist_ok=True)
            (root / "photos" / "new").mkdir(parents=True, exist_ok=True)
            (root / "masks" / f"{name}.png").write_bytes(png_bytes(mask))
            written = time.time()
            (root / "photos" / f"{name}.jpg").write_bytes(jpeg_bytes(picture))
            done = watch.wait_for(lambda e, key=f"{name}.jpg": e["event"] == "item_done" and e["path"] == key)
            ended = watch.wait_for(lambda e, after=done["seen"]: e["event"] == "run_ended" and e["seen"] >= after
                                   and e["summary"]["counts"]["done"] >= 1)
            latencies.append(done["seen"] - written)
            passes.append(ended["duration_seconds"])
            time.sleep(SETTLE + 1)
    finally:
        watch.stop()
    shutil.rmtree(root, ignore_errors=True)
    return {"first": first["duration_seconds"], "latency": median(latencies), "latencies": latencies,
            "passes": passes}


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--drops", type=int, default=3)
    args = parser.parse_args(argv)
    with_report = measure(args.items, args.drops)
    without = measure(args.items, args.drops, "--no-report")
    print(f"watch over {args.items:,} done pairs, local engine, --settle {SETTLE:g}, {args.drops} new pairs each")
    print(f"  first pass (walk, nothing to do)           {with_report['first']:6.2f} s   "
          f"(--no-report: {without['first']:.2f} s)")
    for label, figures in (("with the report (default)", with_report), ("--no-report", without)):
        each = ", ".join(f"{x:.2f}" for x in figures["latencies"])  # type: ignore[attr-defined]
        passes = ", ".join(f"{x:.2f}" for x in figures["passes"])  # type: ignore[attr-defined]
        print(f"  {label:27} written -> done {figures['latency']:5.2f} s (each: {each}); its pass: {passes} s")
    return {"items": args.items, "with_report": with_report, "without": without}


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
