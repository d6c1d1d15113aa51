"""3. The rate limit belongs to the key: 1, 2 and 4 runs of one key started together, each with
``--rate L`` (the key's real limit), pacing alone (``--limiter process``), sharing the key's schedule
through a file on this host (the default) and through Postgres.

Achieved: requests let through a minute while every run is sending (between the 10th and the 90th
percentile of the send times), over L. Busiest: the most requests the emulator's sliding window
(which counts rejected requests too) saw in any window, over its limit. The window is shortened to 20 s
(the runs are told with --rate-window), so a scenario takes about a minute; not shorter, as in the
tests: the slack a window keeps for late requests (0.4 s) would cost more of the rate.

Postgres runs in a throwaway cluster (Debian's binaries, as the tests start it); without them that
column is skipped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

from batch_inpaint.emulator.requestlog import busiest_window
from batch_inpaint.synthetic import write_tree

from .common import WORK, emulator, median

SCOPES = ("process", "host", "postgres")
RUNS = (1, 2, 4)


def one_scenario(limit: float, window: float, windows: int, runs: int, limiter: str, tag: str) -> dict[str, float]:
    per_run = int(limit * window / 60 * windows / runs)
    data = WORK / f"shared-{per_run}"
    if not (data / "photos").exists():
        write_tree(data, [f"p{i:05d}" for i in range(per_run)], size=(64, 48), seed=7)
    state = WORK / f"shared-state-{tag}"
    shutil.rmtree(state, ignore_errors=True)
    with emulator("--rate", f"{limit:g}", "--window-seconds", f"{window:g}", "--work", "stub",
                  keys=("bench-key",), name=f"shared-{tag}") as emu:
        procs = []
        for n in range(runs):
            out = WORK / f"shared-out-{tag}-{n}"
            shutil.rmtree(out, ignore_errors=True)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "batch_inpaint", "run", str(data / "photos"), "--masks", str(data / "masks"),
                 "--out", str(out), "--api-url", emu.url, "--rate", f"{limit:g}", "--rate-window", f"{window:g}",
                 "--limiter", limiter, "--progress", "none"],
                env={**os.environ, "CLIPDROP_API_KEY": "bench-key", "XDG_STATE_HOME": str(state)},
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        for proc in procs:
            _, err = proc.communicate()
            assert proc.returncode == 0, err[-2000:]
        entries = emu.entries()
    times = sorted(e["t"] for e in entries)
    ok = sorted(e["t"] for e in entries if e["status"] == 200)
    lo, hi = int(len(ok) * 0.1), int(len(ok) * 0.9)
    rejected = sum(1 for e in entries if e["status"] == 429)
    return {"achieved": (hi - lo) / (ok[hi] - ok[lo]) * 60 / limit, "429s": rejected, "requests": len(entries),
            "busiest": busiest_window(times, window) / (limit * window / 60)}


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=float, default=300, help="the key's limit, and every run's --rate")
    parser.add_argument("--window", type=float, default=20, help="the server's window, seconds (default 20)")
    parser.add_argument("--windows", type=int, default=3, help="windows of work per scenario (default 3)")
    parser.add_argument("--runs", type=int, default=1, help="repeats of each scenario (medians)")
    args = parser.parse_args(argv)
    scopes = list(SCOPES)
    cluster, pg_url = None, ""
    try:
        from tests.postgres import Cluster, binaries

        bindir = binaries()
        if bindir is None:
            scopes.remove("postgres")
        else:
            cluster = Cluster(bindir)
            pg_url = cluster.start().url
    except ImportError:
        scopes.remove("postgres")
    print(f"runs of one key, each --rate {args.limit:g} = the key's limit L; sliding {args.window:g} s window "
          f"counting rejects; {args.windows} windows of work; median of {args.runs}")
    print("  achieved: let through a minute while all send, / L;  busiest: most in one window / its limit")
    print(f"  {'runs':>4}  " + "  ".join(f"{scope:^34}" for scope in scopes))
    table: dict[str, dict[str, float]] = {}
    try:
        for runs in RUNS:
            cells = []
            for scope in scopes:
                limiter = pg_url if scope == "postgres" else scope
                results = [one_scenario(args.limit, args.window, args.windows, runs, limiter, f"{scope}-{runs}-{r}")
                           for r in range(args.runs)]
                row = table[f"{scope}, {runs} runs"] = {k: median([r[k] for r in results]) for k in results[0]}
                cells.append(f"{row['achieved']:.3f}  429s {row['429s']:4.0f}/{row['requests']:<4.0f} "
                             f"busiest {row['busiest']:.2f}")
            print(f"  {runs:>4}  " + "  ".join(f"{c:^34}" for c in cells), flush=True)
    finally:
        if cluster is not None:
            cluster.stop()
    return {"limit": args.limit, "window": args.window, "table": table}


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
