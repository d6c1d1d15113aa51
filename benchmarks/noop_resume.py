"""4. No-op resume: a re-run over 100,000 done items, beside a bare os.scandir walk of the same tree.

The tree (tiny photos, mirrored masks, outputs) and its manifest are made directly, which takes a
minute once and is kept under benchmarks/.work. Both sides run as fresh processes, interleaved.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time

from batch_inpaint.manifest import Manifest
from batch_inpaint.pipeline import settings_hash
from batch_inpaint.settings import Settings
from batch_inpaint.synthetic import jpeg_bytes, png_bytes, scene

from .common import WORK, measured_cli, median

BARE_WALK = """
import os, sys
def walk(path, stat):
    n = 0
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            n += walk(entry.path, stat)
        else:
            if stat:
                entry.stat(follow_symlinks=False)
            n += 1
    return n
print(walk(sys.argv[1], sys.argv[2] == "stat"))
"""


def build(count: int, per_dir: int = 1000) -> os.PathLike[str]:
    root = WORK / f"noop-{count}"
    if (root / "ready").exists():
        return root
    picture, mask = scene(16, 12, 1)
    image_bytes, mask_bytes = jpeg_bytes(picture), png_bytes(mask)
    settings = Settings(engine="local")
    shaping = settings_hash(settings)
    manifest = Manifest(root / "out" / ".batch-inpaint" / "manifest.sqlite3")
    rows = []
    for i in range(count):
        folder = f"d{i // per_dir:03d}"
        for sub in ("photos", "masks", "out"):
            (root / sub / folder).mkdir(parents=True, exist_ok=True)
        photo = root / "photos" / folder / f"p{i:06d}.jpg"
        mask_path = root / "masks" / folder / f"p{i:06d}.png"
        output = root / "out" / folder / f"p{i:06d}.png"
        photo.write_bytes(image_bytes)
        mask_path.write_bytes(mask_bytes)
        output.write_bytes(mask_bytes)
        ps, ms, os_ = photo.stat(), mask_path.stat(), output.stat()
        rows.append((f"{folder}/p{i:06d}.jpg", str(photo), str(mask_path), ps.st_size, ps.st_mtime_ns, ms.st_size,
                     ms.st_mtime_ns, shaping, f"{folder}/p{i:06d}.png", os_.st_size))
    with manifest.atomic() as db:
        db.executemany(
            "INSERT INTO items (key, image_path, mask_path, image_size, image_mtime_ns, mask_size, mask_mtime_ns,"
            " settings_hash, status, output_path, output_size) VALUES (?,?,?,?,?,?,?,?,'done',?,?)", rows)
    manifest.close()
    (root / "ready").write_text("")
    return root


def bare(root: os.PathLike[str], stat: bool) -> float:
    import subprocess

    started = time.monotonic()
    subprocess.run([sys.executable, "-c", BARE_WALK, str(root), "stat" if stat else "names"], check=True,
                   capture_output=True)
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    root = build(args.items)
    ours, names, stats = [], [], []
    for _ in range(args.runs):
        run = measured_cli("run", str(root / "photos"), "--masks", str(root / "masks"), "--out", str(root / "out"),
                           "--engine", "local", "--progress", "none")
        assert run.returncode == 0 and f"{args.items} already done" in run.stderr, run.stderr[-2000:]
        ours.append(run.seconds)
        names.append(bare(root, stat=False))
        stats.append(bare(root, stat=True))
    o, n, s = median(ours), median(names), median(stats)
    print(f"no-op resume over {args.items:,} done items, median of {args.runs} runs (each a fresh process)")
    print(f"  batch-inpaint run (no request)     {o:6.2f} s")
    print(f"  bare os.scandir walk of the tree   {n:6.2f} s   ratio {o / n:.1f}x   (photos, masks, outputs)")
    print(f"  bare walk with a stat per file     {s:6.2f} s   ratio {o / s:.1f}x")
    return {"items": args.items, "ours": o, "bare": n, "bare_stat": s}


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
