"""1. Rate-limit use: how close to the limit, how many 429s, the busiest 60 s; beside naive clients.

Three clients run at once against one emulator, each with its own key and the same limit L, the
emulator answering after a lognormal latency (mean 3 s, a long tail): batch-inpaint at --rate L, a
sequential client (the provider's curl example in a loop) and an unthrottled parallel client that
sleeps 1 s after a 429. The window measured is batch-inpaint's run.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

import httpx

from batch_inpaint.synthetic import jpeg_bytes, png_bytes, scene, write_tree

from batch_inpaint.emulator.requestlog import busiest_window

from .common import WORK, emulator, measured_cli, median


def naive_client(url: str, key: str, stop: threading.Event, concurrency: int) -> None:
    picture, mask = scene(64, 48, 1)
    files = {"image_file": ("i.jpg", jpeg_bytes(picture), "image/jpeg"), "mask_file": ("m.png", png_bytes(mask), "image/png")}

    def loop() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                try:
                    r = client.post(url, files=files, headers={"x-api-key": key})
                except httpx.HTTPError:
                    continue
                if r.status_code == 429:
                    time.sleep(1.0)

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    stop.wait()
    for t in threads:
        t.join(timeout=70)


def one_run(limit: int, minutes: float, run_no: int) -> dict[str, dict[str, float]]:
    count = int(limit * minutes)
    data = WORK / f"rate-{count}"
    if not (data / "photos").exists():
        write_tree(data, [f"d{i // 500}/p{i:05d}" for i in range(count)], size=(64, 48), seed=100)
    out = WORK / f"rate-out-{run_no}"
    os.system(f"rm -rf '{out}'")
    figures: dict[str, dict[str, float]] = {}
    with emulator("--rate", str(limit), "--latency-mean", "3", "--latency-spread", "0.6", "--work", "stub",
                  keys=("bi", "seq", "par"), name=f"rate-{run_no}") as emu:
        stop = threading.Event()
        sequential = threading.Thread(target=naive_client, args=(emu.url, "seq", stop, 1))
        parallel = threading.Thread(target=naive_client, args=(emu.url, "par", stop, 128))
        sequential.start()
        parallel.start()
        run = measured_cli("run", str(data / "photos"), "--masks", str(data / "masks"), "--out", str(out),
                           "--api-url", emu.url, "--rate", str(limit), "--progress", "none", env={"CLIPDROP_API_KEY": "bi"})
        stop.set()
        sequential.join()
        parallel.join()
        assert run.returncode == 0, run.stderr[-2000:]
        entries = emu.entries()
    ours = sorted(e["t"] for e in entries if e.get("key") == "key1")
    start, end = ours[0], ours[-1]
    for name, key_id in (("batch-inpaint", "key1"), ("sequential", "key2"), ("unthrottled x128", "key3")):
        mine = [e for e in entries if e.get("key") == key_id]
        ok = [e["t"] for e in mine if e["status"] == 200 and start <= e["t"] <= end]
        figures[name] = {
            "achieved/L": (len(ok) - 1) / (end - start) * 60 / limit if name == "batch-inpaint" else len(ok) / (end - start) * 60 / limit,
            "429s": sum(1 for e in mine if e["status"] == 429 and start <= e["t"] <= end),
            "busiest 60 s": busiest_window(e["t"] for e in mine),
        }
    return figures


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=1200, help="L, requests per minute (default 1200)")
    parser.add_argument("--minutes", type=float, default=2.0, help="minutes of work per run (default 2)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    runs = [one_run(args.limit, args.minutes, i) for i in range(args.runs)]
    print(f"rate limit: L = {args.limit}/min, {args.minutes:g} min of work, latency lognormal mean 3 s (sigma 0.6), "
          f"median of {args.runs} runs")
    table: dict[str, dict[str, float]] = {}
    for client in runs[0]:
        table[client] = {k: median([r[client][k] for r in runs]) for k in runs[0][client]}
        row = table[client]
        print(f"  {client:18s} achieved/L {row['achieved/L']:.3f}   429s {row['429s']:.0f}   busiest 60 s "
              f"{row['busiest 60 s']:.0f} (L = {args.limit})")
    return {"limit": args.limit, "minutes": args.minutes, "runs": args.runs, "table": table}


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
