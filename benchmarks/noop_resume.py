"""4. No-op resume: a re-run over 100,000 done items, beside a bare os.scandir walk of the same tree.

The tree (tiny photos, mirrored masks, outputs) and its manifest are made directly, which takes a
minute once and is kept under benchmarks/.work. Every side runs as a fresh process, interleaved.
Beside the bare walks, a floor: the least any re-run must do to notice in-place edits (a stat of
every image and mask, a listing of each output folder, every manifest row read), with no pairing,
no decisions and no imports, to show how much of the re-run is the tool's own work.

Also the time to the first request on a tree of 40,000 pairs none of which is done: from starting
the process to the emulator receiving the request.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

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

# The least any re-run must do to notice an image or mask edited in place, a lost output and a
# changed manifest row: stat every image and mask through an open folder, list each output folder,
# read each item's row. No pairing, no decisions, no imports beyond sqlite3.
FLOOR = """
import os, sqlite3, sys
root = sys.argv[1]
def stat_all(path):
    n = 0
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    n += stat_all(entry.path)
                else:
                    os.stat(entry.name, dir_fd=fd, follow_symlinks=False)
                    n += 1
    finally:
        os.close(fd)
    return n
n = stat_all(root + "/photos") + stat_all(root + "/masks")
n += sum(len(os.listdir(e.path)) for e in os.scandir(root + "/out") if e.is_dir() and not e.name.startswith("."))
db = sqlite3.connect(root + "/out/.batch-inpaint/manifest.sqlite3")
rows = db.execute("SELECT key, status, image_size, image_mtime_ns, mask_size, mask_mtime_ns, settings_hash,"
                  " output_path FROM items").fetchall()
print(n, len(rows))
"""


def build(count: int, per_dir: int = 1000) -> os.PathLike[str]:
    root = WORK / f"noop-{count}"
    if (root / "ready").exists():
        return root
    import anyio  # here, not at the top: the measuring part runs against older installs too (benchmarks.ab)

    from batch_inpaint.runner import engine_shaping
    from batch_inpaint.settings import Settings, settings_hash
    from batch_inpaint.store import SqliteStore
    from batch_inpaint.synthetic import jpeg_bytes, png_bytes, scene

    picture, mask = scene(16, 12, 1)
    image_bytes, mask_bytes = jpeg_bytes(picture), png_bytes(mask)
    settings = Settings(engine="local")
    shaping = settings_hash(settings, engine_shaping(settings))
    manifest = SqliteStore(root / "out" / ".batch-inpaint" / "manifest.sqlite3")
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
    anyio.run(manifest.aclose)
    (root / "ready").write_text("")
    return root


def bare(root: os.PathLike[str], mode: str) -> float:
    """Seconds for a fresh process running the bare walk (mode "names" or "stat") or the floor script."""
    import subprocess

    script, args = (FLOOR, [str(root)]) if mode == "floor" else (BARE_WALK, [str(root), mode])
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", script, *args], check=True, capture_output=True)
    return time.monotonic() - started


def first_request(root: os.PathLike[str], emu_url: str, log: os.PathLike[str]) -> float:
    """Seconds from starting a run over the tree, with nothing done, to the API's first request."""
    import json
    import shutil
    import signal
    import subprocess

    out = WORK / "first-request-out"
    shutil.rmtree(out, ignore_errors=True)
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    started = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "batch_inpaint", "run", f"{root}/photos", "--masks",
                             f"{root}/masks", "--out", str(out), "--api-url", emu_url, "--progress", "none"],
                            env={**environ, "CLIPDROP_API_KEY": "bench-key"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while True:
            text = open(log).read() if os.path.exists(log) else ""
            if text.strip():
                return float(json.loads(text.splitlines()[0])["t"]) - started
            if proc.poll() is not None or time.time() - started > 60:
                raise RuntimeError("no request within 60 s")
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    root = build(args.items)
    ours, cpus, names, stats, floors = [], [], [], [], []
    for _ in range(args.runs):
        run = measured_cli("run", str(root / "photos"), "--masks", str(root / "masks"), "--out", str(root / "out"),
                           "--engine", "local", "--progress", "none")
        assert run.returncode == 0 and f"{args.items} already done" in run.stderr, run.stderr[-2000:]
        ours.append(run.seconds)
        cpus.append(run.cpu)
        names.append(bare(root, "names"))
        stats.append(bare(root, "stat"))
        floors.append(bare(root, "floor"))
    from .common import emulator

    first = []
    tree = build(40_000)
    for _ in range(args.runs):
        with emulator("--rate", "1000000", "--work", "stub", name="first-request") as emu:
            first.append(first_request(tree, emu.url, emu.log))
    o, n, s, f = median(ours), median(names), median(stats), median(floors)
    print(f"no-op resume over {args.items:,} done items, median of {args.runs} runs (each a fresh process)")
    print(f"  batch-inpaint run (no request)     {o:6.2f} s   CPU {median(cpus):.2f} s (steadier where the disk is not)")
    print(f"  bare os.scandir walk of the tree   {n:6.2f} s   ratio {o / n:.1f}x   (photos, masks, outputs)")
    print(f"  bare walk with a stat per file     {s:6.2f} s   ratio {o / s:.1f}x")
    print(f"  floor: stat inputs, list outputs, read rows {f:5.2f} s   itself {f / n:.1f}x the bare walk, we are {o / f:.1f}x it")
    print(f"  first request on 40,000 pairs, none done: {median(first):.2f} s (each: {', '.join(f'{x:.2f}' for x in first)})")
    return {"items": args.items, "ours": o, "bare": n, "bare_stat": s, "floor": f, "first": median(first)}


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
