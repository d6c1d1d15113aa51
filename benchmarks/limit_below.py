"""2. A server limit below --rate: how much of the real limit a run uses, and how many 429s it draws.

The emulator plays the hardest reading of "N a minute": a sliding window that counts rejected requests,
its limit a share of the client's --rate, with and without a Retry-After of 1 s; then a limit at and
above --rate (nothing may change: no 429, the whole --rate), and two runs of one key started together.
The window is shortened (``--window`` seconds instead of 60, and the client told so with
``--rate-window``) so five windows take a minute or two instead of five; a Retry-After of 1 s is then five
times as costly as against a 60 s window, so these figures are a floor.

Before this client learned the limit (issue 12), --rate 600 against a limit of 60 drew 531 429s for 56
pictures in 547 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from batch_inpaint.synthetic import write_tree

from .common import WORK, emulator, median

SCENARIOS = (  # (name, share of --rate the server allows, Retry-After, runs of one key)
    ("limit 0.5x rate, Retry-After 1 s", 0.5, True, 1),
    ("limit 0.5x rate, no Retry-After", 0.5, False, 1),
    ("limit 0.8x rate, Retry-After 1 s", 0.8, True, 1),
    ("limit 0.8x rate, no Retry-After", 0.8, False, 1),
    ("limit 1.0x rate", 1.0, True, 1),
    ("limit 1.5x rate", 1.5, True, 1),
    ("two runs, one key, limit 1.0x", 1.0, True, 2),
)


def one_run(rate: float, window: float, windows: int, share: float, retry_after: bool, runs: int,
            run_no: int) -> dict[str, float]:
    limit = rate * share
    per_run = int(min(rate, limit) * window / 60 * windows / runs)
    data = WORK / f"below-{per_run}"
    if not (data / "photos").exists():
        write_tree(data, [f"p{i:05d}" for i in range(per_run)], size=(64, 48), seed=7)
    with emulator("--rate", f"{limit:g}", "--window-seconds", f"{window:g}", "--work", "stub",
                  *([] if retry_after else ["--no-retry-after"]), keys=("bench-key",), name=f"below-{run_no}") as emu:
        procs = []
        for n in range(runs):
            out = WORK / f"below-out-{run_no}-{n}"
            os.system(f"rm -rf '{out}'")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "batch_inpaint", "run", str(data / "photos"), "--masks", str(data / "masks"),
                 "--out", str(out), "--api-url", emu.url, "--rate", f"{rate:g}", "--rate-window", f"{window:g}",
                 "--progress", "none"], env={**os.environ, "CLIPDROP_API_KEY": "bench-key"},
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        for proc in procs:
            _, err = proc.communicate()
            assert proc.returncode == 0, err[-2000:]
        entries = emu.entries()
    ok = sorted(e["t"] for e in entries if e["status"] == 200)
    rejected = sum(1 for e in entries if e["status"] == 429)
    return {"achieved/limit": (len(ok) - 1) / (ok[-1] - ok[0]) * 60 / min(limit, rate),
            "429 share": rejected / len(entries), "429s": rejected, "requests": len(entries),
            "seconds": ok[-1] - ok[0]}


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=600, help="the client's --rate (default 600)")
    parser.add_argument("--window", type=float, default=12, help="the server's window, seconds (default 12)")
    parser.add_argument("--windows", type=int, default=5, help="windows of work per run (default 5)")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args(argv)
    print(f"server limit below --rate: --rate {args.rate:g}, sliding {args.window:g} s window counting rejects, "
          f"{args.windows} windows of work, median of {args.runs} runs")
    print("  achieved: requests let through a minute, over the server's limit (or --rate, when lower)")
    table: dict[str, dict[str, float]] = {}
    for i, (name, share, retry_after, runs) in enumerate(SCENARIOS):
        results = [one_run(args.rate, args.window, args.windows, share, retry_after, runs, i * 10 + r)
                   for r in range(args.runs)]
        row = table[name] = {k: median([r[k] for r in results]) for k in results[0]}
        print(f"  {name:34s} achieved {row['achieved/limit']:.3f}   429s {row['429s']:.0f} of "
              f"{row['requests']:.0f} requests ({row['429 share']:.1%})   {row['seconds']:.0f} s", flush=True)
    return {"rate": args.rate, "window": args.window, "table": table}


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
