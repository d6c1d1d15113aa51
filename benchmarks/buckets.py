"""Buckets against the disk: 20,000 small pairs in one flat prefix each (photos/, masks/) of a local S3
server (moto's, in this process), and the same tree on disk.

- Time to the first request: from starting a run with nothing done to the emulator receiving its first
  request. A flat prefix of 40,000 keys is listed 1,000 keys a page; the walk pairs a page at a time,
  so the first request need not wait for the listing's end.
- Steady rate use: requests a minute the emulator receives while the run sends (10th to 90th
  percentile of its requests), over ``--rate``, for a run stopped after ``--seconds``. Each picture in
  a bucket costs two GETs and a PUT to the S3 server, which runs on the same two cores.
- Listing alone: the paged walk of the bucket to its last pair, and the folder walk of the disk tree,
  with each process's peak memory, for the tree and one a quarter of its size: flat if the walk streams.

The objects are put straight into moto's backend (its HTTP PUTs would take minutes); every read and
write of the runs goes over HTTP, as to any S3. Needs the test extras (moto, s3fs).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .common import WORK, emulator, median

SECRET = "bench-secret"


def build(count: int) -> Path:
    root = WORK / f"buckets-{count}"
    if (root / "ready").exists():
        return root
    from batch_inpaint.synthetic import jpeg_bytes, png_bytes, scene

    _, mask = scene(32, 24, 3)
    mask_bytes = png_bytes(mask)
    for sub in ("photos", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):  # each picture its own: identical ones would be paid for once (answers.py)
        (root / "photos" / f"p{i:06d}.jpg").write_bytes(jpeg_bytes(scene(32, 24, i)[0]))
        (root / "masks" / f"p{i:06d}.png").write_bytes(mask_bytes)
    (root / "ready").write_text("")
    return root


def serve(roots: list[Path]) -> tuple[Any, str]:
    """moto on a free port, with the trees' objects put straight into its backend (``<root's name>/...``)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    import boto3

    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="bench",
                          aws_secret_access_key=SECRET)
    client.create_bucket(Bucket="bench")
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for root in roots:
        for sub in ("photos", "masks"):
            for path in sorted((root / sub).iterdir()):
                backend.put_object("bench", f"{root.name}/{sub}/{path.name}", path.read_bytes())
    return server, url


def env(url: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}, "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
            "CLIPDROP_API_KEY": "bench-key", "XDG_STATE_HOME": str(WORK / "buckets-state")}


def send_for(args: list[str], environ: dict[str, str], log: Path, seconds: float, rate: float) -> tuple[float, float]:
    """(seconds to the first request, rate use while sending) of a run stopped after ``seconds``."""
    import shutil

    shutil.rmtree(WORK / "buckets-state", ignore_errors=True)
    shutil.rmtree(WORK / "buckets-out", ignore_errors=True)
    started = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "batch_inpaint", "run", *args, "--rate", f"{rate:g}",
                             "--progress", "none", "--no-report"], env=environ, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(seconds)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate()
    times = sorted(float(json.loads(line)["t"]) for line in log.read_text().splitlines() if line.strip())
    if not times:
        raise RuntimeError(f"no request: {err[-2000:]}")
    first = times[0] - started
    lo, hi = times[len(times) // 10], times[len(times) * 9 // 10]
    per_minute = (len(times) * 8 // 10) / (hi - lo) * 60 if hi > lo else 0.0
    return first, per_minute / rate


def listing(where: str, masks: str, environ: dict[str, str]) -> tuple[float, float]:
    """Seconds for a fresh process to walk, pair and sign the whole tree (no manifest, no request), and
    the process's peak RSS in MB."""
    script = ("import sys, time; from batch_inpaint.buckets import location; "
              "from batch_inpaint.pairing import Folder, PairingRules, walk_folders; t = time.monotonic(); "
              "n = sum(len(f.sign()) for f in walk_folders(location(sys.argv[1]), "
              "PairingRules(masks_dir=location(sys.argv[2]))) if isinstance(f, Folder)); "
              "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]; "
              "print(n, time.monotonic() - t, int(hwm) / 1024)")  # VmHWM: this program's, not the fork's before exec
    done = subprocess.run([sys.executable, "-c", script, where, masks], env=environ, capture_output=True, text=True,
                          check=True)
    count, seconds, peak = done.stdout.split()
    return float(seconds), float(peak)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--rates", type=float, nargs="*", default=[600.0, 3000.0])
    parser.add_argument("--seconds", type=float, default=40.0, help="how long each run sends")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    small, root = build(args.pairs // 4), build(args.pairs)
    server, url = serve([small, root])
    environ = env(url)
    sides = {"bucket": [f"s3://bench/{root.name}/photos", "--masks", f"s3://bench/{root.name}/masks", "--out",
                        "s3://bench/out"],
             "disk": [str(root / "photos"), "--masks", str(root / "masks"), "--out", str(WORK / "buckets-out")]}
    figures: dict[str, object] = {}
    try:
        print(f"buckets: {args.pairs:,} pairs of 32x24 pictures, flat photos/ and masks/ prefixes in moto's S3 on "
              f"127.0.0.1, against the same tree on disk; median of {args.runs} runs")
        walks = {}
        for tree in (small, root):
            for side, photos, masks in (("bucket", f"s3://bench/{tree.name}/photos", f"s3://bench/{tree.name}/masks"),
                                        ("disk", str(tree / "photos"), str(tree / "masks"))):
                took = [listing(photos, masks, environ) for _ in range(args.runs)]
                walks[side, tree.name] = (median([t for t, _ in took]), median([m for _, m in took]))
            count = int(tree.name.rpartition("-")[2])
            print(f"  walk, pair and sign {count:6,} pairs: bucket {walks['bucket', tree.name][0]:6.2f} s, peak "
                  f"{walks['bucket', tree.name][1]:4.0f} MB   disk {walks['disk', tree.name][0]:5.2f} s, peak "
                  f"{walks['disk', tree.name][1]:4.0f} MB")
        for rate in args.rates:
            row = {}
            for side, side_args in sides.items():
                results = []
                for _ in range(args.runs):
                    with emulator("--rate", "1000000", "--work", "stub", name="buckets") as emu:
                        results.append(send_for([*side_args, "--api-url", emu.url], environ, emu.log,
                                                args.seconds, rate))
                row[side] = (median([r[0] for r in results]), median([r[1] for r in results]))
            print(f"  --rate {rate:5.0f}: first request  bucket {row['bucket'][0]:.2f} s  disk {row['disk'][0]:.2f} s"
                  f"   rate use  bucket {row['bucket'][1]:.3f}  disk {row['disk'][1]:.3f}")
            figures[f"rate {rate:g}"] = row
    finally:
        server.stop()
    figures["walks"] = {f"{side} {name}": value for (side, name), value in walks.items()}
    return figures


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
