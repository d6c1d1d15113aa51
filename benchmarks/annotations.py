"""10. Masks from annotations: what drawing a mask costs beside reading a mask file, and what a large
COCO file costs to load.

Per picture (1 MP and 12 MP, 20 polygons each, grown by 15% of each one's size): the mask drawn from
the annotations, against decoding a mask PNG of the same size (what a run with mask files does).
Then a COCO file of N images and 3N box annotations: the seconds to load it and name its pairs, and
the process's peak memory.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from pathlib import Path

from .common import WORK, median

SIZES = {"1 MP": (1200, 900), "12 MP": (4000, 3000)}


def _dataset(size: tuple[int, int], objects: int = 20) -> Path:
    import numpy as np
    from PIL import Image

    width, height = size
    root = WORK / f"annotations-{width}x{height}"
    root.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (height, width, 3), dtype=np.uint8)).save(
        root / "p.jpg", quality=90)
    rng = random.Random(2)
    annotations = []
    for i in range(objects):
        w, h = rng.randint(width // 40, width // 8), rng.randint(height // 40, height // 8)
        x, y = rng.randint(0, width - w), rng.randint(0, height - h)
        annotations.append({"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                            "segmentation": [[x, y, x + w, y, x + w, y + h // 2, x + w // 2, y + h, x, y + h // 2]]})
    coco = {"images": [{"id": 1, "file_name": "p.jpg", "width": width, "height": height}],
            "categories": [{"id": 1, "name": "thing"}], "annotations": annotations}
    (root / "coco.json").write_text(json.dumps(coco))
    return root


def per_picture(size: tuple[int, int], runs: int) -> tuple[float, float]:
    """(ms to draw the mask from annotations, ms to decode a mask PNG of that size), medians."""
    from PIL import Image

    from batch_inpaint.annotations import load
    from batch_inpaint.pairing import PairingRules

    root = _dataset(size)
    annotations = load(f"coco:{root / 'coco.json'}")
    pair = next(annotations.pairs(root, PairingRules()))
    drawn, decoded = [], []
    for _ in range(runs):
        started = time.perf_counter()
        png = annotations.mask_png(pair, size, size, 1)
        drawn.append(time.perf_counter() - started)
        (root / "mask.png").write_bytes(png)
        started = time.perf_counter()
        with Image.open(root / "mask.png") as im:
            im.load()
        decoded.append(time.perf_counter() - started)
    return median(drawn) * 1000, median(decoded) * 1000


def big_coco(images: int) -> tuple[float, float]:
    from batch_inpaint.annotations import load
    from batch_inpaint.pairing import PairingRules

    root = WORK / f"annotations-coco-{images}"
    root.mkdir(parents=True, exist_ok=True)
    path = root / "instances.json"
    if not path.exists():
        path.write_text(json.dumps({
            "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "logo"}, {"id": 3, "name": "car"}],
            "images": [{"id": i, "file_name": f"d{i // 1000}/p{i}.jpg", "width": 640, "height": 480}
                       for i in range(images)],
            "annotations": [{"id": j, "image_id": j % images, "category_id": 1 + j % 3, "bbox": [10, 10, 50, 40],
                             "iscrowd": 0} for j in range(3 * images)]}))
    started = time.perf_counter()
    annotations = load(f"coco:{path}", classes=("person",))
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    count = sum(1 for _ in annotations.pairs(root, PairingRules()))
    assert count == images
    return loaded, time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--images", type=int, default=100_000)
    args = parser.parse_args(argv)
    print(f"masks from annotations, 20 polygons a picture, median of {args.runs}")
    figures: dict[str, object] = {}
    for label, size in SIZES.items():
        drawn, decoded = per_picture(size, args.runs)
        figures[label] = (drawn, decoded)
        print(f"  {label:5}  drawn from the annotations {drawn:7.1f} ms   a mask PNG decoded {decoded:6.1f} ms")
    loaded, named = big_coco(args.images)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  a COCO file of {args.images:,} images, {3 * args.images:,} annotations: loaded in {loaded:.2f} s, "
          f"its pairs named (a stat each) in {named:.2f} s; peak memory {peak:.0f} MB")
    figures.update(loaded=loaded, named=named, peak=peak)
    return figures


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
