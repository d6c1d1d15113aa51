"""A fleet on one job: 1, 2 and 4 workers sharing a Postgres manifest, on this machine.

- Local engine (bound by the CPU): pictures a second for the whole job, from the first worker's start
  to the last one's end. On 2 cores, more workers than cores cannot go faster: the figure shows what
  the claims and the extra walks cost, not a speed-up another machine would bring.
- Emulator at a high limit (bound by the network, 0.3 s an answer): pictures a second and the share of
  the key's limit used, while every worker sends (10th to 90th percentile of the sends).
- The claim's cost: one worker with the local engine, its manifest in SQLite (no claims) and in
  Postgres, per picture.

Postgres runs in a throwaway cluster (Debian's binaries, as the tests start it); without them the
benchmark says so and measures nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import uuid

from batch_inpaint.synthetic import write_tree

from .common import WORK, emulator, median

WORKERS = (1, 2, 4)


def run_job(workers: int, data_name: str, extra: list[str], manifest: str | None,
            env: dict[str, str] | None = None) -> float:
    """Seconds for ``workers`` copies of one command to finish one job."""
    data = WORK / data_name
    out = WORK / f"fleet-out-{uuid.uuid4().hex[:8]}"
    job = ["--manifest", manifest, "--job", uuid.uuid4().hex] if manifest else []
    started = time.monotonic()
    procs = [subprocess.Popen(
        [sys.executable, "-m", "batch_inpaint", "run", str(data / "photos"), "--masks", str(data / "masks"),
         "--out", str(out), "--progress", "none", "--no-report", *job, *extra],
        env={**os.environ, **(env or {}), "XDG_STATE_HOME": str(WORK / f"fleet-state-{n}")},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for n in range(workers)]
    for proc in procs:
        _, err = proc.communicate()
        assert proc.returncode == 0, err[-2000:]
    seconds = time.monotonic() - started
    shutil.rmtree(out, ignore_errors=True)
    return seconds


def ensure(name: str, count: int, size: tuple[int, int]) -> None:
    if not (WORK / name / "photos").exists():
        write_tree(WORK / name, [f"p{i:05d}" for i in range(count)], size=size, seed=19)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pictures", type=int, default=200, help="pictures of each job (default 200)")
    parser.add_argument("--limit", type=float, default=3000, help="the key's limit a minute at the emulator")
    parser.add_argument("--runs", type=int, default=2, help="repeats of each scenario (medians)")
    args = parser.parse_args(argv)
    from tests.postgres import Cluster, binaries

    bindir = binaries()
    if bindir is None:
        print("fleet: no Postgres binaries under /usr/lib/postgresql: nothing measured")
        return {}
    cluster = Cluster(bindir)
    url = cluster.start().url
    local_data, api_data = f"fleet-local-{args.pictures}", f"fleet-api-{args.pictures}"
    ensure(local_data, args.pictures, (640, 480))
    ensure(api_data, args.pictures, (64, 48))
    results: dict[str, float] = {}
    try:
        print(f"one job of {args.pictures} pictures, N workers on this {os.cpu_count()}-core machine, one Postgres "
              f"manifest; median of {args.runs}")
        print(f"  {'workers':>7}  {'local engine, 640x480: pictures/s':>34}  "
              f"{'emulator, limit ' + format(args.limit, 'g') + '/min: pictures/s, of limit':>46}")
        for workers in WORKERS:
            local = median([args.pictures / run_job(workers, local_data, ["--engine", "local"], url)
                            for _ in range(args.runs)])
            api = median([_api_rate(workers, api_data, args.limit, url) for _ in range(args.runs)])
            results[f"local {workers}"], results[f"api {workers}"] = local, api
            print(f"  {workers:>7}  {local:>34.1f}  {api * args.limit / 60:>36.1f}, {api:.3f}", flush=True)
        sqlite = median([run_job(1, local_data, ["--engine", "local"], None) for _ in range(args.runs)])
        postgres = median([run_job(1, local_data, ["--engine", "local"], url) for _ in range(args.runs)])
        per = (postgres - sqlite) / args.pictures * 1000
        results["claim ms"] = per
        print(f"  one worker, local engine: SQLite manifest {sqlite:.2f} s, Postgres {postgres:.2f} s: "
              f"{per:+.1f} ms a picture for the claims, leases and the server's round trips")
    finally:
        cluster.stop()
    return results


def _api_rate(workers: int, data: str, limit: float, url: str) -> float:
    """The share of the key's limit the job used while every worker was sending."""
    with emulator("--rate", f"{limit:g}", "--latency-mean", "0.3", "--work", "stub", name="fleet-api") as emu:
        run_job(workers, data, ["--api-url", emu.url, "--rate", f"{limit:g}"], url,
                env={"CLIPDROP_API_KEY": "bench-key"})
        sent = sorted(e["t"] for e in emu.entries() if e["status"] == 200)
    lo, hi = int(len(sent) * 0.1), int(len(sent) * 0.9)
    return (hi - lo) / (sent[hi] - sent[lo]) * 60 / limit


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
