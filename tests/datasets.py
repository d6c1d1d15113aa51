"""Small annotated datasets for the masks-from-annotations tests: the same five pictures labelled in
COCO (polygons, compressed and uncompressed RLE, boxes, a crowd region, two EXIF-turned pictures, one
annotated in each frame) and in YOLO (boxes and polygons), with each object's expected raster drawn
here independently (numpy slices, OpenCV's polygon fill), and a check that a mask is those objects
grown by 15% of each one's own size."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from batch_inpaint.synthetic import scene

W, H = 320, 240
CLASSES = ["person", "logo", "car"]


@dataclass
class Obj:
    name: str
    core: np.ndarray  #: bool, H x W, in the upright frame
    #: False for a polygon: OpenCV's fill and COCO's rasterisation differ by a pixel along slanted edges
    #: (more at a sharp tip), so its growth is checked from the core less that pixel.
    exact: bool = True

    @property
    def radius(self) -> int:
        ys, xs = np.nonzero(self.core)
        extent = max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        return int(round(extent * 15 / 100 / 2))


def _box(x: int, y: int, w: int, h: int, size: tuple[int, int] = (W, H)) -> np.ndarray:
    core = np.zeros((size[1], size[0]), bool)
    core[y:y + h, x:x + w] = True
    return core


def _poly(points: list[tuple[int, int]]) -> np.ndarray:
    canvas = np.zeros((H, W), np.uint8)
    cv2.fillPoly(canvas, [np.array(points, np.int32)], 1)
    return canvas.astype(bool)


def _rle_counts(core: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE: run lengths of the column-major pixels, starting with a run of 0s."""
    flat = core.flatten(order="F").astype(np.uint8)
    counts, value, run = [], 0, 0
    for pixel in flat:
        if pixel == value:
            run += 1
        else:
            counts.append(run)
            value, run = pixel, 1
    counts.append(run)
    return [int(c) for c in counts]


def _jpeg(seed: int, orientation: int = 1) -> bytes:
    im, _ = scene(W, H, seed)
    buffer = io.BytesIO()
    if orientation == 6:  # stored turned a quarter to the left, tagged to be shown turned back
        exif = Image.Exif()
        exif[0x0112] = 6
        im.transpose(Image.Transpose.ROTATE_90).save(buffer, "JPEG", quality=95, exif=exif)
    else:
        im.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


@dataclass
class Dataset:
    root: Path
    photos: Path
    objects: dict[str, list[Obj]]  #: every object of each picture, by key

    def expected(self, key: str, classes: set[str] | None = None) -> list[Obj]:
        return [o for o in self.objects[key] if classes is None or o.name in classes]


def coco_dataset(root: Path) -> Dataset:
    """a: a polygon person and a box logo; b: a compressed-RLE person and an uncompressed-RLE crowd of
    cars; c: a car only; sub/d: EXIF-turned, annotated upright; sub/e: EXIF-turned, annotated as stored."""
    from pycocotools import mask as coco_mask

    photos = root / "photos"
    (photos / "sub").mkdir(parents=True)
    for seed, (key, orientation) in enumerate((("a.jpg", 1), ("b.jpg", 1), ("c.jpg", 1), ("sub/d.jpg", 6),
                                               ("sub/e.jpg", 6))):
        (photos / key).write_bytes(_jpeg(seed + 3, orientation))
    triangle = [(40, 40), (120, 40), (80, 120)]
    person_b, cars_b = _box(60, 150, 80, 50), _box(220, 20, 80, 40)
    compressed = coco_mask.encode(np.asfortranarray(person_b.astype(np.uint8)))
    raw_e = _box(20, 100, 60, 80, size=(H, W))  # in the stored frame: 240 wide, 320 high
    objects = {
        "a.jpg": [Obj("person", _poly(triangle), exact=False), Obj("logo", _box(200, 30, 60, 40))],
        "b.jpg": [Obj("person", person_b), Obj("car", cars_b)],
        "c.jpg": [Obj("car", _box(30, 150, 100, 50))],
        "sub/d.jpg": [Obj("person", _box(100, 80, 80, 60))],
        "sub/e.jpg": [Obj("person", np.rot90(raw_e, -1))],
    }
    coco = {
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)],
        "images": [{"id": 1, "file_name": "a.jpg", "width": W, "height": H},
                   {"id": 2, "file_name": "b.jpg", "width": W, "height": H},
                   {"id": 3, "file_name": "c.jpg", "width": W, "height": H},
                   {"id": 4, "file_name": "sub/d.jpg", "width": W, "height": H},
                   {"id": 5, "file_name": "sub/e.jpg", "width": H, "height": W}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
             "segmentation": [[float(v) for p in triangle for v in p]], "bbox": [40, 40, 80, 80]},
            {"id": 2, "image_id": 1, "category_id": 2, "iscrowd": 0, "bbox": [200, 30, 60, 40]},
            {"id": 3, "image_id": 2, "category_id": 1, "iscrowd": 0,
             "segmentation": {"counts": compressed["counts"].decode(), "size": [H, W]}},
            {"id": 4, "image_id": 2, "category_id": 3, "iscrowd": 1,
             "segmentation": {"counts": _rle_counts(cars_b), "size": [H, W]}},
            {"id": 5, "image_id": 3, "category_id": 3, "iscrowd": 0, "bbox": [30, 150, 100, 50]},
            {"id": 6, "image_id": 4, "category_id": 1, "iscrowd": 0, "bbox": [100, 80, 80, 60]},
            {"id": 7, "image_id": 5, "category_id": 1, "iscrowd": 0, "bbox": [20, 100, 60, 80]},
        ],
    }
    (root / "coco.json").write_text(json.dumps(coco))
    return Dataset(root, photos, objects)


def yolo_dataset(root: Path) -> Dataset:
    """The same pictures with YOLO labels (normalised, upright): boxes and a polygon; c has no label file."""
    photos, labels = root / "images", root / "labels"
    (photos / "sub").mkdir(parents=True)
    (labels / "sub").mkdir(parents=True)
    for seed, (key, orientation) in enumerate((("a.jpg", 1), ("b.jpg", 1), ("c.jpg", 1), ("sub/d.jpg", 6))):
        (photos / key).write_bytes(_jpeg(seed + 3, orientation))
    (labels / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    triangle = [(40, 40), (120, 40), (80, 120)]
    poly = " ".join(f"{x / W:.6f} {y / H:.6f}" for x, y in triangle)

    def box(cls: int, x: int, y: int, w: int, h: int) -> str:
        return f"{cls} {(x + w / 2) / W:.6f} {(y + h / 2) / H:.6f} {w / W:.6f} {h / H:.6f}"

    (labels / "a.txt").write_text(f"0 {poly}\n{box(1, 200, 30, 60, 40)}\n")
    (labels / "b.txt").write_text(f"{box(0, 60, 150, 80, 50)}\n{box(2, 220, 20, 80, 40)}\n")
    (labels / "sub" / "d.txt").write_text(box(0, 100, 80, 80, 60) + "\n")
    objects = {
        "a.jpg": [Obj("person", _poly(triangle), exact=False), Obj("logo", _box(200, 30, 60, 40))],
        "b.jpg": [Obj("person", _box(60, 150, 80, 50)), Obj("car", _box(220, 20, 80, 40))],
        "c.jpg": [],
        "sub/d.jpg": [Obj("person", _box(100, 80, 80, 60))],
    }
    return Dataset(root, photos, objects)


def check_mask(mask_png: bytes | Path, expected: list[Obj], where: str, radius: int | None = None) -> None:
    """The mask is strictly 0/255, upright-sized, and exactly the objects each grown by its own radius
    (within 1.5 px of rasterisation either way), or by ``radius`` pixels each when given."""
    data = mask_png.read_bytes() if isinstance(mask_png, Path) else mask_png
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "L" and im.size == (W, H), f"{where}: {im.mode} {im.size}"
        pixels = np.asarray(im)
    assert set(np.unique(pixels)) <= {0, 255}, f"{where}: not strictly 0/255"
    mask = pixels == 255
    if not expected:
        assert not mask.any(), f"{where}: a mask where no object was chosen"
        return
    reach = np.zeros_like(mask)
    for obj in expected:
        distance = cv2.distanceTransform((~obj.core).astype(np.uint8), cv2.DIST_L2, 5)
        grow = obj.radius if radius is None else radius
        assert grow >= 2, f"{where}: the test's object is too small to see the growth"
        inner = obj.core if obj.exact else cv2.erode(obj.core.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        missing = (cv2.distanceTransform((~inner).astype(np.uint8), cv2.DIST_L2, 5) <= grow - 1.5) & ~mask
        assert not missing.any(), f"{where}: {obj.name} not grown by {grow} px ({missing.sum()} px short)"
        reach |= distance <= grow + 1.5
    beyond = mask & ~reach
    assert not beyond.any(), f"{where}: {beyond.sum()} px of mask farther than each object's growth"
