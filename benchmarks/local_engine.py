"""5. Local engine: pictures per second on all cores, beside bare one-core loops of cv2.inpaint.

Both sides run as fresh processes on the same 2 MP pictures, interleaved. The bare loops are what
a user would write: read, inpaint the whole picture, write a PNG; and the inpainting call alone
on pictures already in memory (the strictest floor).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

from batch_inpaint.synthetic import jpeg_bytes, png_bytes, scene

from .common import WORK, measured_cli, median

BARE = """
import os, sys, time, cv2
cv2.setNumThreads(1)
photos, masks, out, mode = sys.argv[1:5]
names = sorted(os.listdir(photos))
pairs = [(os.path.join(photos, n), os.path.join(masks, n[:-4] + ".png")) for n in names]
if mode == "inpaint-only":
    loaded = [(cv2.imread(p), cv2.imread(m, cv2.IMREAD_GRAYSCALE)) for p, m in pairs]
    t = time.monotonic()
    for image, mask in loaded:
        cv2.inpaint(image, mask, 5, cv2.INPAINT_TELEA)
else:
    os.makedirs(out, exist_ok=True)
    t = time.monotonic()
    for n, (p, m) in zip(names, pairs):
        result = cv2.inpaint(cv2.imread(p), cv2.imread(m, cv2.IMREAD_GRAYSCALE), 5, cv2.INPAINT_TELEA)
        cv2.imwrite(os.path.join(out, n[:-4] + ".png"), result)
print(time.monotonic() - t)
"""


def make(count: int) -> object:
    root = WORK / f"local-{count}"
    if (root / "ready").exists():
        return root
    (root / "photos").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        picture, mask = scene(1600, 1200, 300 + i)
        (root / "photos" / f"p{i:03d}.jpg").write_bytes(jpeg_bytes(picture, quality=90))
        (root / "masks" / f"p{i:03d}.png").write_bytes(png_bytes(mask))
    (root / "ready").write_text("")
    return root


def bare(root, mode: str) -> float:  # type: ignore[no-untyped-def]
    out = WORK / "local-bare-out"
    shutil.rmtree(out, ignore_errors=True)
    done = subprocess.run([sys.executable, "-c", BARE, str(root / "photos"), str(root / "masks"), str(out), mode],
                          capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pictures", type=int, default=80)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    root = make(args.pictures)
    ours, loop, only = [], [], []
    for _ in range(args.runs):
        out = WORK / "local-out"
        shutil.rmtree(out, ignore_errors=True)
        run = measured_cli("run", str(root / "photos"), "--masks", str(root / "masks"), "--out", str(out),
                           "--engine", "local", "--progress", "none")
        assert run.returncode == 0, run.stderr[-2000:]
        ours.append(args.pictures / run.seconds)
        loop.append(args.pictures / bare(root, "loop"))
        only.append(args.pictures / bare(root, "inpaint-only"))
    o, b, i = median(ours), median(loop), median(only)
    print(f"local engine: {args.pictures} pictures of 2 MP, median of {args.runs} runs")
    print(f"  batch-inpaint --engine local (whole run, start-up included)  {o:6.2f} pictures/s")
    print(f"  bare one-core loop: read, cv2.inpaint, write PNG            {b:6.2f} pictures/s   ratio {o / b:.2f}x")
    print(f"  bare one-core cv2.inpaint alone, pictures in memory         {i:6.2f} pictures/s   ratio {o / i:.2f}x")
    return {"pictures": args.pictures, "ours": o, "loop": b, "inpaint_only": i}


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
