"""3. Memory: peak RSS of batch-inpaint for 200 and for 5,000 pairs of 12 MP pictures, default concurrency.

To keep 5,000 real-size pairs to a few hundred MB of disk, every photo is a hard link to one 12 MP
JPEG and every mask is the same 12 MP mask PNG with its index in a text chunk: each pair is distinct
(no two are sent as duplicates), yet the files cost nothing. The emulator answers with a flat PNG
of the right size (``--work stub``), so the run measures the client; ``--echo`` adds a 200-pair run
whose answers are the full-size picture as PNG, to show the peak with realistic answer sizes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import zlib

from batch_inpaint.synthetic import jpeg_bytes, png_bytes, scene

from .common import WORK, emulator, measured_cli, median


def with_text_chunk(png: bytes, text: str) -> bytes:
    body = b"Comment\x00" + text.encode()
    chunk = len(body).to_bytes(4, "big") + b"tEXt" + body + zlib.crc32(b"tEXt" + body).to_bytes(4, "big")
    return png[:33] + chunk + png[33:]


def make_tree(count: int) -> os.PathLike[str]:
    root = WORK / f"memory-{count}"
    if (root / "done").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    picture, mask = scene(4000, 3000, 77)
    source = WORK / "memory-source.jpg"
    source.write_bytes(jpeg_bytes(picture, quality=90))
    mask_png = png_bytes(mask)
    for i in range(count):
        folder = f"d{i // 500:02d}"
        (root / "photos" / folder).mkdir(parents=True, exist_ok=True)
        (root / "masks" / folder).mkdir(parents=True, exist_ok=True)
        os.link(source, root / "photos" / folder / f"p{i:05d}.jpg")
        (root / "masks" / folder / f"p{i:05d}.png").write_bytes(with_text_chunk(mask_png, str(i)))
    (root / "done").write_text("")
    return root


def peak(count: int, work: str) -> tuple[float, float]:
    root = make_tree(count)
    out = WORK / f"memory-out-{count}"
    shutil.rmtree(out, ignore_errors=True)
    with emulator("--rate", "1000000", "--work", work, name=f"memory-{count}") as emu:
        run = measured_cli("run", str(root / "photos"), "--masks", str(root / "masks"), "--out", str(out),
                           "--api-url", emu.url, "--rate", "1000000", "--progress", "none",
                           env={"CLIPDROP_API_KEY": "bench-key"})
    assert run.returncode == 0, run.stderr[-2000:]
    shutil.rmtree(out, ignore_errors=True)
    return run.max_rss_mb, run.seconds


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3, help="runs of each size, interleaved; medians are quoted")
    parser.add_argument("--echo", action="store_true", help="also a run with full-size answers")
    args = parser.parse_args(argv)
    small, large = [], []
    for _ in range(args.runs):
        small.append(peak(args.small, "stub"))
        large.append(peak(args.large, "stub"))
    small_rss, small_s = median([r for r, _ in small]), median([s for _, s in small])
    large_rss, large_s = median([r for r, _ in large]), median([s for _, s in large])
    print(f"memory: peak RSS at the default concurrency (128 workers, 400 MB in flight), 12 MP pairs, median of {args.runs} runs")
    print(f"  {args.small:5d} pairs  {small_rss:6.0f} MB  ({small_s:.0f} s)   each run: {', '.join(f'{r:.0f}' for r, _ in small)}")
    print(f"  {args.large:5d} pairs  {large_rss:6.0f} MB  ({large_s:.0f} s)   each run: {', '.join(f'{r:.0f}' for r, _ in large)}"
          f"   ratio {large_rss / small_rss:.3f}")
    result: dict[str, object] = {"small": (args.small, small_rss), "large": (args.large, large_rss)}
    if args.echo:
        echo_rss, echo_s = peak(args.small, "echo")
        print(f"  {args.small:5d} pairs, full-size answers  {echo_rss:6.0f} MB  ({echo_s:.0f} s)")
        result["echo"] = (args.small, echo_rss)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
