"""Masks from annotations (``--masks-from coco:FILE.json`` or ``yolo:LABELS``): every object of the
chosen classes drawn into one strict 0/255 mask per image, each object grown by its own size.

Drawing is pycocotools' (the reference rasterisation of COCO polygons, RLE and boxes), for YOLO's
boxes and polygons too. Annotations are taken in the picture's upright frame, EXIF orientation
applied, as browsers, CVAT, Label Studio, Ultralytics and Detectron2 show and read a picture. A COCO
image whose width and height are those of its stored pixels before the turn (a 90 degree turn swaps
them) was annotated unturned: its mask is drawn in that frame and turned with the pixels.

An image's mask is a function of its objects of the chosen classes and of the dilation: the pair's
mask signature is a hash of them (`signature`), so a change to ``--classes`` or to one image's
annotations makes exactly the images whose mask changes due again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from .errors import ConfigError, InvalidInput
from .pairing import IMAGE_EXTENSIONS, FileSig, Pair, PairingRules, _selected, split_name

#: The provider's advice for masks made automatically: about 15% larger than the object.
DEFAULT_DILATE = "15%"
#: EXIF orientation -> the turn that makes stored pixels upright (as `PIL.ImageOps.exif_transpose`).
TURNS = {2: 0, 3: 3, 4: 1, 5: 5, 6: 4, 7: 6, 8: 2}  # PIL.Image.Transpose values, without importing Pillow here
#: How far past the picture's edge a coordinate may lie (rounding in annotation tools) before it is an error.
SLACK = 1.0


@dataclass(frozen=True, slots=True)
class Shape:
    where: str  #: "annotation 17" or "line 3", for errors
    category: str
    kind: str  #: polygon, rle or box
    data: Any
    crowd: bool = False


@dataclass(slots=True)
class Entry:
    """One image's annotations: its shapes, its size as the annotations say (COCO), a problem."""

    shapes: list[Shape] = field(default_factory=list)
    size: tuple[int, int] | None = None
    image_id: Any = None
    problem: str | None = None


def parse_source(spec: str) -> tuple[str, Path]:
    kind, sep, path = spec.partition(":")
    if not sep or kind not in ("coco", "yolo") or not path:
        raise ConfigError(f"--masks-from must be coco:FILE.json or yolo:LABELS_DIR, not {spec!r}")
    return kind, Path(path).expanduser()


class Annotations:
    """The annotations of a dataset, with the classes chosen and the dilation; reads files only."""

    def __init__(self, kind: str, path: Path, names: dict[int, str], classes: tuple[str, ...], dilate: str,
                 entries: dict[str, Entry] | None = None, orphans: list[str] | None = None) -> None:
        self.kind, self.path, self.names, self.dilate = kind, path, names, dilate
        self.entries = entries  # COCO: every image; YOLO: read from each label file when asked
        self.orphans = orphans or []
        self.chosen = _choose(classes, names, path) if classes else None
        self.save_dir: Path | None = None

    # --- the work ---------------------------------------------------------------------------------

    def pairs(self, input_dir: Path, rules: PairingRules) -> Iterator[Pair]:
        """A signed Pair for every image: COCO's listed images, or the images under INPUT for YOLO."""
        if self.entries is not None:
            named = _bases(sorted(k for k in self.entries if _selected(k, rules)))
        else:
            named = _images(input_dir, rules)
        for key, base in named:
            image = input_dir / key
            problem = None
            try:
                image_sig = FileSig.of(image)
            except OSError as exc:
                image_sig, problem = None, f"{self._image_ref(key)}: the image cannot be read: {exc.strerror}"
            entry = self.entry(key)
            problem = problem or entry.problem
            mask_sig = FileSig(0, self.signature(entry))
            yield Pair(key, str(image), self._mask_ref(key, entry), base, image_sig, mask_sig, problem)

    def entry(self, key: str) -> Entry:
        if self.entries is not None:
            return self.entries.get(key) or Entry(problem=f"{self.path}: no image {key!r}")
        return _yolo_entry(self.path / PurePosixPath(key).with_suffix(".txt"), self.names)

    def objects(self, entry: Entry) -> list[Shape]:
        return [s for s in entry.shapes if self.chosen is None or s.category in self.chosen]

    def signature(self, entry: Entry) -> int:
        """A hash of what the image's mask is made of, as a positive 62-bit number (the manifest keeps it
        where a mask file's mtime would be)."""
        shapes = [(s.kind, s.data) for s in self.objects(entry)]
        text = json.dumps([entry.size, entry.problem, self.dilate, shapes], default=str)  # a mended problem too
        return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 2

    def mask_png(self, pair: Pair, raw_size: tuple[int, int], upright_size: tuple[int, int],
                 orientation: int) -> bytes:
        """The image's mask at its upright size, as PNG bytes; InvalidInput naming the annotation."""
        from PIL import Image

        from . import imaging
        from .output import write_atomic

        entry = self.entry(pair.key)
        if entry.problem is not None:
            raise InvalidInput(entry.problem)
        frame, turn = upright_size, False
        if entry.size is not None and entry.size != upright_size:
            if entry.size == raw_size:
                frame, turn = raw_size, True
            else:
                raise InvalidInput(f"{self._image_ref(pair.key)} is {entry.size[0]}x{entry.size[1]} in the "
                                   f"annotations but {upright_size[0]}x{upright_size[1]} on disk")
        mask = Image.fromarray(self._draw(self.objects(entry), frame))
        if turn and orientation in TURNS:
            mask = mask.transpose(Image.Transpose(TURNS[orientation]))
        png = imaging.encode_png(mask)
        if self.save_dir is not None:
            write_atomic(self.save_dir / f"{pair.output_base}.png", png, durable=False)
        return png

    def census(self, keys: list[str]) -> dict[str, tuple[int, int]]:
        """Objects and images of each chosen class among ``keys`` (for `plan`)."""
        objects: dict[str, int] = {}
        images: dict[str, int] = {}
        for key in keys:
            entry = self.entry(key)
            found = self.objects(entry) if entry.problem is None else []
            for shape in found:
                objects[shape.category] = objects.get(shape.category, 0) + 1
            for category in {s.category for s in found}:
                images[category] = images.get(category, 0) + 1
        return {c: (objects[c], images[c]) for c in sorted(objects)}

    # --- drawing ----------------------------------------------------------------------------------

    def _draw(self, shapes: list[Shape], size: tuple[int, int]) -> Any:
        """Each object drawn and grown within a window around it: the cost is the objects', not the
        picture's (20 objects on a 12 MP picture: a window each, not 20 full-size passes)."""
        import cv2
        import numpy as np

        from .preflight import radius_for_extent

        width, height = size
        mask = np.zeros((height, width), np.uint8)
        for shape in shapes:
            x0, y0, x1, y1 = self._extent(shape, width, height)
            radius = radius_for_extent(self.dilate, max(x1 - x0, y1 - y0))
            window = (max(0, x0 - radius), max(0, y0 - radius), min(width, x1 + radius), min(height, y1 + radius))
            if window[2] <= window[0] or window[3] <= window[1]:
                continue
            drawn = self._raster(shape, width, height, window)
            if radius:
                kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
                drawn = cv2.dilate(drawn, kernel)
            wx0, wy0, wx1, wy1 = window
            np.maximum(mask[wy0:wy1, wx0:wx1], drawn, out=mask[wy0:wy1, wx0:wx1])
        mask[mask > 0] = 255
        return mask

    def _extent(self, shape: Shape, width: int, height: int) -> tuple[int, int, int, int]:
        """The object's box in whole pixels; InvalidInput when it lies outside the picture."""
        import math

        where = f"{self.path}: {shape.where}"
        if shape.kind == "rle":
            size = list(shape.data.get("size", ()))
            if size != [height, width]:
                raise InvalidInput(f"{where}: its RLE is {size} (height, width) but the image is [{height}, {width}]")
            x, y, w, h = self._rle_box(shape, where)
            return int(x), int(y), int(x + w), int(y + h)
        points = self._pixels(shape, width, height)
        xs, ys = [v for p in points for v in p[0::2]], [v for p in points for v in p[1::2]]
        if min(xs) < -SLACK or min(ys) < -SLACK or max(xs) > width + SLACK or max(ys) > height + SLACK:
            raise InvalidInput(f"{where}: lies outside the {width}x{height} image")
        return (max(0, math.floor(min(xs))), max(0, math.floor(min(ys))), min(width, math.ceil(max(xs))),
                min(height, math.ceil(max(ys))))

    def _rle(self, shape: Shape, where: str) -> Any:
        from pycocotools import mask as coco_mask

        rle = dict(shape.data)
        height, width = rle["size"]
        try:
            return coco_mask.frPyObjects(rle, height, width) if isinstance(rle["counts"], list) else rle
        except Exception as exc:  # counts that do not add up
            raise InvalidInput(f"{where}: cannot be drawn ({exc})") from None

    def _rle_box(self, shape: Shape, where: str) -> list[float]:
        from pycocotools import mask as coco_mask

        try:
            return [float(v) for v in coco_mask.toBbox(self._rle(shape, where))]
        except InvalidInput:
            raise
        except Exception as exc:  # a malformed counts string
            raise InvalidInput(f"{where}: cannot be drawn ({exc})") from None

    def _raster(self, shape: Shape, width: int, height: int, window: tuple[int, int, int, int]) -> Any:
        """The object's pixels within ``window`` (x0, y0, x1, y1), 0/1."""
        import numpy as np
        from pycocotools import mask as coco_mask

        where = f"{self.path}: {shape.where}"
        wx0, wy0, wx1, wy1 = window
        ww, wh = wx1 - wx0, wy1 - wy0
        try:
            if shape.kind == "rle":  # given at full size: decoded whole, then cut
                full = coco_mask.decode(self._rle(shape, where)).reshape(height, width)
                return np.ascontiguousarray(full[wy0:wy1, wx0:wx1])
            points = [[v - (wx0 if i % 2 == 0 else wy0) for i, v in enumerate(p)]
                      for p in self._pixels(shape, width, height)]
            if shape.kind == "box":
                x, y, x1, y1 = points[0]
                rles = coco_mask.frPyObjects(np.array([[x, y, x1 - x, y1 - y]], dtype=np.float64), wh, ww)
            else:
                rles = coco_mask.frPyObjects(points, wh, ww)
            drawn = coco_mask.decode(coco_mask.merge(rles) if len(rles) > 1 else rles[0])
        except InvalidInput:
            raise
        except Exception as exc:
            raise InvalidInput(f"{where}: cannot be drawn ({exc})") from None
        return np.ascontiguousarray(drawn.reshape(wh, ww))

    def _pixels(self, shape: Shape, width: int, height: int) -> list[list[float]]:
        """Polygons as pixel coordinates; a box as [[x0, y0, x1, y1]]."""
        if self.kind == "yolo":  # normalised to the picture's size
            if shape.kind == "box":
                xc, yc, w, h = shape.data
                return [[(xc - w / 2) * width, (yc - h / 2) * height, (xc + w / 2) * width, (yc + h / 2) * height]]
            return [[v * (width if i % 2 == 0 else height) for i, v in enumerate(shape.data)]]
        if shape.kind == "box":
            x, y, w, h = shape.data
            return [[x, y, x + w, y + h]]
        return [list(p) for p in shape.data]

    def _image_ref(self, key: str) -> str:
        entry = self.entries.get(key) if self.entries is not None else None
        return f"{self.path}: image id {entry.image_id} ({key})" if entry is not None else f"{key}"

    def _mask_ref(self, key: str, entry: Entry) -> str:
        if self.kind == "coco":
            return f"{self.path}#{entry.image_id}"
        return str(self.path / PurePosixPath(key).with_suffix(".txt"))


def _bases(keys: list[str]) -> Iterator[tuple[str, str]]:
    """Each key with its output's path less the extension, as a walk names it: the image's stem, or
    its whole name where two images of one folder share a stem (a.jpg and a.png: a.jpg.png, a.png.png)."""
    def split(key: str) -> tuple[str, str, str]:
        folder, _, name = key.rpartition("/")
        return folder, name, split_name(name)[0]

    counts = Counter((folder, stem) for folder, _, stem in map(split, keys))
    for key in keys:
        folder, name, stem = split(key)
        prefix = f"{folder}/" if folder else ""
        yield key, prefix + (name if counts[folder, stem] > 1 else stem)


def _choose(classes: tuple[str, ...], names: dict[int, str], path: Path) -> frozenset[str]:
    by_name = set(names.values())
    chosen = set()
    for token in (t.strip() for spec in classes for t in spec.split(",")):
        if not token:
            continue
        if token in by_name:
            chosen.add(token)
        elif token.lstrip("-").isdigit() and int(token) in names:
            chosen.add(names[int(token)])
        else:
            known = ", ".join(f"{i}: {n}" for i, n in sorted(names.items()))
            raise ConfigError(f"{path}: no class {token!r} (--classes takes names or ids; the classes are {known})")
    return frozenset(chosen)


def _images(root: Path, rules: PairingRules) -> Iterator[tuple[str, str]]:
    """Image paths under ``root`` relative to it, a folder at a time in a stable order (YOLO's images),
    with their outputs' names (`_bases`)."""
    for folder, dirs, files in os.walk(root, followlinks=rules.follow_symlinks):
        dirs.sort()
        rel = os.path.relpath(folder, root)
        if not rules.recursive:
            dirs.clear()
        keys = [name if rel == "." else f"{PurePosixPath(Path(rel))}/{name}" for name in sorted(files)
                if split_name(name)[1] in IMAGE_EXTENSIONS]
        yield from _bases([key for key in keys if _selected(key, rules)])


# --- COCO -------------------------------------------------------------------------------------------


def _load_coco(path: Path) -> tuple[dict[int, str], dict[str, Entry], list[str]]:
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the annotations: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not a COCO JSON file ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(
            data.get("annotations", []), list) or not isinstance(data.get("categories"), list):
        raise ConfigError(f"{path}: not a COCO file: it needs 'images', 'annotations' and 'categories' lists")
    names: dict[int, str] = {}
    for n, category in enumerate(data["categories"]):
        if not isinstance(category, dict) or not isinstance(category.get("id"), int) or "name" not in category:
            raise ConfigError(f"{path}: category {n} has no integer 'id' and 'name'")
        names[category["id"]] = str(category["name"])
    entries: dict[str, Entry] = {}
    by_id: dict[Any, Entry] = {}
    for n, image in enumerate(data["images"]):
        if not isinstance(image, dict) or "id" not in image or not isinstance(image.get("file_name"), str):
            raise ConfigError(f"{path}: image {n} has no 'id' and 'file_name'")
        key = str(PurePosixPath(image["file_name"].replace("\\", "/")))
        entry = Entry(image_id=image["id"])
        width, height = image.get("width"), image.get("height")
        if isinstance(width, int) and isinstance(height, int):
            entry.size = (width, height)
        if PurePosixPath(key).is_absolute() or ".." in PurePosixPath(key).parts:
            key = f"_outside/{image['id']}"
            entry.problem = f"{path}: image id {image['id']}: file_name {image['file_name']!r} is not inside INPUT"
        elif key in entries:
            entry.problem = f"{path}: image id {image['id']}: file_name {key!r} is listed twice"
            entries[key].problem = entry.problem
        entries.setdefault(key, entry)
        by_id[image["id"]] = entry
    orphans = []
    for n, ann in enumerate(data.get("annotations", [])):
        ident = ann.get("id", f"#{n}") if isinstance(ann, dict) else f"#{n}"
        where = f"annotation {ident}"
        if not isinstance(ann, dict) or ann.get("image_id") not in by_id:
            orphans.append(f"{path}: {where}: no image with id {ann.get('image_id') if isinstance(ann, dict) else '?'}")
            continue
        entry = by_id[ann["image_id"]]
        shape = _coco_shape(ann, where, names)
        if isinstance(shape, str):
            entry.problem = entry.problem or f"{path}: {shape}"
        else:
            entry.shapes.append(shape)
    return names, entries, orphans


def _coco_shape(ann: dict[str, Any], where: str, names: dict[int, str]) -> Shape | str:
    category = names.get(ann.get("category_id"))  # type: ignore[arg-type]
    if category is None:
        return f"{where}: no category with id {ann.get('category_id')!r}"
    crowd = bool(ann.get("iscrowd"))
    segmentation = ann.get("segmentation")
    if isinstance(segmentation, dict):
        if not isinstance(segmentation.get("counts"), (str, list)) or not isinstance(segmentation.get("size"), list):
            return f"{where}: an RLE needs 'counts' and 'size'"
        return Shape(where, category, "rle", {"counts": segmentation["counts"], "size": segmentation["size"]}, crowd)
    if isinstance(segmentation, list) and segmentation:
        if not all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 and all(isinstance(v, (int, float))
                   for v in p) for p in segmentation):
            return f"{where}: a polygon needs 3 points or more, as [x1, y1, x2, y2, ...]"
        return Shape(where, category, "polygon", [list(p) for p in segmentation], crowd)
    bbox = ann.get("bbox")
    if isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox):
        if bbox[2] <= 0 or bbox[3] <= 0:
            return f"{where}: its box {bbox} has no area"
        return Shape(where, category, "box", list(bbox), crowd)
    return f"{where}: neither a segmentation nor a bbox"


# --- YOLO -------------------------------------------------------------------------------------------


def _yolo_names(labels: Path, names_file: Path | None) -> dict[int, str]:
    path = names_file or labels / "classes.txt"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        hint = "" if names_file else " (or give the class names with --yolo-names FILE)"
        raise ConfigError(f"{path}: cannot read the class names: {exc.strerror}{hint}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"{path}: reading a YAML file needs PyYAML: pip install 'batch-inpaint[annotations]'") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        found = data.get("names") if isinstance(data, dict) else None
        if isinstance(found, list):
            return {i: str(n) for i, n in enumerate(found)}
        if isinstance(found, dict):
            return {int(i): str(n) for i, n in found.items()}
        raise ConfigError(f"{path}: no 'names' list or mapping")
    return {i: line.strip() for i, line in enumerate(text.splitlines()) if line.strip()}


def _yolo_entry(label: Path, names: dict[int, str]) -> Entry:
    """The objects of one YOLO label file; no file means no object (the image is background)."""
    entry = Entry()
    try:
        lines = label.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return entry
    except (OSError, UnicodeDecodeError) as exc:
        entry.problem = f"{label}: cannot read the labels: {exc}"
        return entry
    for n, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        where = f"line {n}"
        try:
            cls, values = int(fields[0]), [float(v) for v in fields[1:]]
        except ValueError:
            entry.problem = f"{label}: {where}: not 'class x y w h' or 'class x1 y1 x2 y2 ...' numbers"
            return entry
        if cls not in names:
            entry.problem = f"{label}: {where}: no class {cls} in the class names"
            return entry
        if len(values) == 4:
            kind = "box"
        elif len(values) >= 6 and len(values) % 2 == 0:
            kind = "polygon"
        else:
            entry.problem = f"{label}: {where}: {len(values)} numbers after the class: 4 for a box, 6 or more for a polygon"
            return entry
        if any(v < -0.01 or v > 1.01 for v in values):
            entry.problem = f"{label}: {where}: lies outside the image (coordinates are fractions of its size, 0 to 1)"
            return entry
        entry.shapes.append(Shape(f"{label.name} {where}", names[cls], kind, values))
    return entry


@functools.lru_cache(maxsize=4)
def _load(kind: str, path: Path, names_file: Path | None, stamp: tuple[int, int]) -> tuple[
        dict[int, str], dict[str, Entry] | None, tuple[str, ...]]:
    if kind == "coco":
        names, entries, orphans = _load_coco(path)
        return names, entries, tuple(orphans)
    return _yolo_names(path, names_file), None, ()


def load(spec: str, *, classes: tuple[str, ...] = (), dilate: str | None = None,
         names_file: Path | None = None, save_dir: Path | None = None) -> Annotations:
    """The annotations ``spec`` names (a ConfigError for what stops every image: no such file, not
    COCO, an unknown class); what is wrong with one image becomes that image's problem."""
    import importlib.util

    if importlib.util.find_spec("pycocotools") is None:
        raise ConfigError("--masks-from needs pycocotools: pip install 'batch-inpaint[annotations]'")
    kind, path = parse_source(spec)
    if kind == "coco" and not path.is_file():
        raise ConfigError(f"{path}: COCO annotation file not found")
    if kind == "yolo" and not path.is_dir():
        raise ConfigError(f"{path}: YOLO labels folder not found")
    st = path.stat()
    names, entries, orphans = _load(kind, path.resolve(), names_file, (st.st_size, st.st_mtime_ns))
    annotations = Annotations(kind, path, names, classes, dilate or DEFAULT_DILATE, entries, list(orphans))
    annotations.save_dir = save_dir
    return annotations
