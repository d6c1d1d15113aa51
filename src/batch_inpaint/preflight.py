"""Preflight: turn a Pair into exactly what the API accepts, or say why it cannot be sent.

Nothing the API would reject is ever sent: images become JPEG or PNG of at most 16,000,000 pixels and
30,000,000 bytes, upright with no orientation tag; masks become strict 0/255 single-channel PNGs of the
same size. Where nothing needs fixing the original bytes go out untouched, so the common case costs
only a header parse, a quick scan of the image stream and one mask decode with a count of its pixels
inside their bounding box.
"""

from __future__ import annotations

import functools
import io
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PIL import Image

from . import imaging
from .buckets import Location
from .errors import InvalidInput
from .hashing import XXH128, content_hash
from .pairing import Pair
from .settings import Settings

if TYPE_CHECKING:
    from .annotations import Annotations

API_MAX_PIXELS = 16_000_000
API_MAX_BYTES = 30_000_000
PASSTHROUGH_MODES = {"JPEG": {"RGB", "L"}, "PNG": {"RGB", "RGBA", "L", "LA", "P"}}
MOSTLY_MASKED = 0.9


@dataclass(frozen=True, slots=True)
class PreflightOptions:
    threshold: int = 128
    dilate: str | None = None
    resize_mask: bool = False
    oversize: str = "downscale"
    #: The manifest's algorithm for the hashes of the files and of what is sent (`hashing`).
    content_hash: str = XXH128
    #: Masks drawn from annotations (each object grown by itself there) instead of read from files.
    annotations: Annotations | None = field(default=None, compare=False)

    @classmethod
    def from_settings(cls, s: Settings, content_hash: str = XXH128) -> "PreflightOptions":
        if s.masks_from is None:
            return cls(s.mask_threshold, s.dilate, s.resize_mask, s.oversize, content_hash)
        from .annotations import load

        annotations = load(s.masks_from, classes=s.classes, dilate=s.mask_dilate, names_file=s.yolo_names,
                           save_dir=s.save_masks)
        return cls(s.mask_threshold, None, False, s.oversize, content_hash, annotations)


@dataclass(frozen=True, slots=True)
class Placement:
    """How the sent picture maps back onto the original: a box of it, scaled to ``sent_size``."""

    box: tuple[int, int, int, int]
    sent_size: tuple[int, int]


@dataclass(frozen=True, slots=True)
class Prepared:
    pair: Pair
    image_bytes: bytes = field(repr=False)
    image_type: str
    mask_png: bytes = field(repr=False)
    size: tuple[int, int]
    original_size: tuple[int, int]
    image_hash: str
    mask_hash: str
    placement: Placement | None = None
    full_mask_png: bytes | None = field(default=None, repr=False)
    icc: bytes | None = field(default=None, repr=False)
    exif: bytes | None = field(default=None, repr=False)
    fixes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    empty_mask: bool = False
    mask_coverage: float = 0.0
    #: The bytes that go out (image, its type, mask): with the engine's identity, what a request is.
    payload_hash: str = ""

    @property
    def content_key(self) -> str:
        return f"{self.image_hash}:{self.mask_hash}"


def read_file(path: Location, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{what} cannot be read: {exc.strerror}") from None
    if not data:
        raise InvalidInput(f"{what} is an empty file")
    return data


def read_pair(pair: Pair, options: PreflightOptions) -> tuple[bytes, bytes | None]:
    """The image's bytes and the mask file's (None when the mask is drawn from annotations)."""
    if pair.mask is None and options.annotations is None:
        raise InvalidInput("no mask for this image")
    image_data = read_file(pair.image, "image")
    if options.annotations is not None:
        return image_data, None
    assert pair.mask is not None
    return image_data, read_file(pair.mask, "mask")


def prepare(pair: Pair, options: PreflightOptions, data: tuple[bytes, bytes | None] | None = None) -> Prepared:
    """Check and fix one pair (``data``: its bytes, read already by `read_pair`). Raises InvalidInput
    with a reason a person can act on."""
    image_data, mask_file_data = data or read_pair(pair, options)
    if mask_file_data is not None:
        mask_data = mask_file_data
    fixes: list[str] = []
    warnings: list[str] = []
    image = _open(image_data, "image")
    upright_size = _upright_size(image)
    if options.annotations is not None:
        mask_data = options.annotations.mask_png(pair, image.size, upright_size, imaging.orientation(image))
    mask, mask_as_is, coverage = _mask_pixels(mask_data, upright_size, options, fixes)
    digest = functools.partial(content_hash, algorithm=options.content_hash)
    image_hash, mask_hash = digest(image_data), digest(mask_data)
    common = dict(
        pair=pair,
        original_size=upright_size,
        image_hash=image_hash,
        mask_hash=mask_hash,
        icc=image.info.get("icc_profile") or None,
        exif=imaging.exif_without_orientation(image),
        mask_coverage=coverage,
    )
    if coverage == 0.0:
        return Prepared(image_bytes=b"", image_type="", mask_png=b"", size=upright_size,
                        empty_mask=True, fixes=tuple(fixes), **common)  # type: ignore[arg-type]
    if coverage > MOSTLY_MASKED:
        warnings.append(f"the mask covers {coverage:.0%} of the picture")
    sent_image, image_type, placement, sent_mask = _image_for_api(image, image_data, mask, options, fixes)
    unchanged = mask_as_is and placement is None
    mask_png = mask_data if unchanged else imaging.encode_png(sent_mask, compress_level=6)
    # the files' own hashes stand for bytes sent as they are: no second pass over a 12 MP JPEG
    image_part = image_hash if sent_image is image_data else digest(sent_image)
    mask_part = mask_hash if mask_png is mask_data else digest(mask_png)
    return Prepared(
        payload_hash=digest(f"{image_part}:{image_type}:{mask_part}".encode()),
        image_bytes=sent_image,
        image_type=image_type,
        mask_png=mask_png,
        size=sent_mask.size,
        placement=placement,
        full_mask_png=imaging.encode_png(mask) if placement else None,
        fixes=tuple(fixes),
        warnings=tuple(warnings),
        **common,  # type: ignore[arg-type]
    )


def _open(data: bytes, what: str) -> Image.Image:
    try:
        return imaging.open_image(data)
    except imaging.UnreadableImage as exc:
        raise InvalidInput(f"{what}: {exc}") from None


def _upright_size(im: Image.Image) -> tuple[int, int]:
    w, h = im.size
    return (h, w) if imaging.orientation(im) in (5, 6, 7, 8) else (w, h)


def _mask_pixels(
    data: bytes, size: tuple[int, int], options: PreflightOptions, fixes: list[str]
) -> tuple[Image.Image, bool, float]:
    """The mask as a strict 0/255 "L" image of the image's upright size, whether the file already was
    one, and the share of the picture it covers."""
    im = _open(data, "mask")
    strict = im.format == "PNG" and im.mode == "L" and imaging.orientation(im) == 1
    histogram: list[int] = []
    try:
        im = imaging.upright(im)
        if strict:
            histogram = imaging.nonzero_histogram(im)
        if strict and any(histogram[1:255]):
            strict = False
            fixes.append("mask grey values thresholded to black and white")
        mask = im if strict else imaging.strict_mask(im, options.threshold)
    except imaging.UnreadableImage as exc:
        raise InvalidInput(f"mask: {exc}") from None
    if not strict and not fixes:
        fixes.append("mask converted to a black-and-white PNG")
    if mask.size != size:
        if not options.resize_mask:
            w, h = mask.size
            raise InvalidInput(f"mask is {w}x{h} but the image is {size[0]}x{size[1]} (see --resize-mask)")
        fixes.append(f"mask resized from {mask.size[0]}x{mask.size[1]}")
        mask = mask.resize(size, Image.Resampling.NEAREST)
        strict = False
    radius = dilation_radius(options.dilate, mask)
    if radius > 0:
        import cv2  # only for --dilate: a run without it starts without OpenCV and NumPy
        import numpy as np

        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        mask = Image.fromarray(cv2.dilate(np.asarray(mask), kernel))
        fixes.append(f"mask dilated by {radius}px")
        strict = False
    share = histogram[255] / (size[0] * size[1]) if strict else imaging.coverage(mask)
    return mask, strict, share


def dilation_radius(spec: str | None, mask: Image.Image | None) -> int:
    """'12' or '12px' grows by 12 pixels; '15%' by 15% of the masked area's size (half each side)."""
    fixed = radius_for_extent(spec, 0)  # checks the spec; a share of nothing is nothing
    if not spec or "%" not in spec:
        return fixed
    box = mask.getbbox() if mask is not None else None
    return 0 if box is None else radius_for_extent(spec, max(box[2] - box[0], box[3] - box[1]))


def radius_for_extent(spec: str | None, extent: int) -> int:
    """The dilation ``spec`` asks for around an object ``extent`` pixels across (its longer side)."""
    if not spec:
        return 0
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(px|%)?\s*", spec)
    if m is None:
        raise ValueError(f"dilate must be pixels ('12') or a percentage ('15%'), not {spec!r}")
    amount = float(m.group(1))
    return int(round(amount)) if m.group(2) != "%" else int(round(extent * amount / 100.0 / 2.0))


def _image_for_api(
    image: Image.Image, data: bytes, mask: Image.Image, options: PreflightOptions, fixes: list[str]
) -> tuple[bytes, str, Placement | None, Image.Image]:
    fmt = image.format or "?"
    w, h = _upright_size(image)
    oriented = imaging.orientation(image) != 1
    passthrough = (
        fmt in PASSTHROUGH_MODES
        and image.mode in PASSTHROUGH_MODES[fmt]
        and not oriented
        and w * h <= API_MAX_PIXELS
        and len(data) <= API_MAX_BYTES
    )
    if passthrough:
        _check_stream(image, data, fmt)
        return data, f"image/{fmt.lower()}", None, mask
    try:
        pixels = imaging.upright(image)
    except imaging.UnreadableImage as exc:
        raise InvalidInput(f"image: {exc}") from None
    if oriented:
        fixes.append("rotated upright from its EXIF orientation")
    if fmt not in PASSTHROUGH_MODES:
        fixes.append(f"converted from {fmt} to PNG")
    deep = pixels.mode in imaging.DEEP_MODES
    pixels = _api_mode(pixels, fixes)
    placement = None
    if w * h > API_MAX_PIXELS:
        pixels, mask, placement = _fit_pixels(pixels, mask, options, fixes)
    if fmt == "JPEG":
        encoded, as_jpeg = _jpeg_within_limit(pixels), True
    else:
        encoded, as_jpeg = imaging.encode_png(pixels), False
        if API_MAX_BYTES < len(encoded) < API_MAX_BYTES * 1.25:  # zlib's best level saves a few % more
            encoded = imaging.encode_png(pixels, compress_level=9)
            if len(encoded) <= API_MAX_BYTES:
                fixes.append("re-encoded as an optimised PNG to fit 30 MB")
        if len(encoded) > API_MAX_BYTES:
            encoded, as_jpeg = _jpeg_within_limit(pixels), True
            fixes.append(f"sent as a high-quality JPEG: as a PNG it is over {API_MAX_BYTES:,} bytes")
    if placement is None and (deep or (as_jpeg and (fmt != "JPEG" or image.mode not in ("RGB", "L")))):
        # What was sent lost something the file holds (depth, alpha, or a lossless format's exactness):
        # the answer is pasted back inside the mask only, so every other pixel stays the original's.
        placement = Placement((0, 0, w, h), (w, h))
        fixes.append("every pixel outside the mask kept from the original")
    return encoded, "image/jpeg" if as_jpeg else "image/png", placement, mask


def _jpeg_within_limit(pixels: Image.Image) -> bytes:
    """The best JPEG quality whose file the API takes; only the cleaned region keeps its loss."""
    for quality in (95, 90, 85, 80):
        encoded = imaging.encode_jpeg(pixels, quality=quality)
        if len(encoded) <= API_MAX_BYTES:
            return encoded
    raise InvalidInput(f"image is over {API_MAX_BYTES:,} bytes even as a JPEG of quality 80")


def _check_stream(image: Image.Image, data: bytes, fmt: str) -> None:
    """Catch truncated or corrupt files cheaply: a PNG CRC walk; for a JPEG, its end marker, or else
    (trailing data, or truncation) a 1/8-scale decode that reads the whole entropy-coded stream."""
    if fmt == "JPEG" and data.endswith(b"\xff\xd9"):
        return
    try:
        if fmt == "JPEG":
            image.draft(image.mode, (max(1, image.size[0] // 8), max(1, image.size[1] // 8)))
            imaging.load_pixels(image)
        else:
            Image.open(io.BytesIO(data)).verify()
    except imaging.UnreadableImage as exc:
        raise InvalidInput(f"image: {exc}") from None
    except Exception as exc:
        raise InvalidInput(f"image data is broken or truncated ({type(exc).__name__})") from None


def _api_mode(im: Image.Image, fixes: list[str]) -> Image.Image:
    if im.mode in ("RGB", "L", "RGBA"):
        return im
    if im.mode in imaging.DEEP_MODES:
        fixes.append(f"converted {im.mode} pixels to 8-bit")
        return imaging.eight_bit(im)
    has_alpha = im.mode in ("LA", "PA") or (im.mode == "P" and "transparency" in im.info)
    fixes.append(f"converted {im.mode} pixels to {'RGBA' if has_alpha else 'RGB'}")
    return im.convert("RGBA" if has_alpha else "RGB")


def _fit_pixels(
    pixels: Image.Image, mask: Image.Image, options: PreflightOptions, fixes: list[str]
) -> tuple[Image.Image, Image.Image, Placement]:
    w, h = pixels.size
    if options.oversize == "fail":
        raise InvalidInput(f"image is {w}x{h}, over {API_MAX_PIXELS:,} pixels (oversize = fail)")
    box = (0, 0, w, h)
    if options.oversize == "crop":
        box = _crop_box(mask, w, h)
        fixes.append(f"sent a {box[2] - box[0]}x{box[3] - box[1]} crop around the mask")
    bw, bh = box[2] - box[0], box[3] - box[1]
    scale = min(1.0, math.sqrt(API_MAX_PIXELS / (bw * bh)))
    sent = (max(1, int(bw * scale)), max(1, int(bh * scale)))
    whole = box == (0, 0, w, h)
    region = pixels if whole else pixels.crop(box)
    region_mask = mask if whole else mask.crop(box)
    if sent != (bw, bh):
        region = region.resize(sent, Image.Resampling.LANCZOS)
        region_mask = region_mask.resize(sent, Image.Resampling.NEAREST)
        fixes.append(f"downscaled {bw}x{bh} to {sent[0]}x{sent[1]} for the API, result blended back at full size")
    return region, region_mask, Placement(box, sent)


def _crop_box(mask: Image.Image, w: int, h: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = mask.getbbox() or (0, 0, w, h)
    margin = max(64, (x1 - x0 + y1 - y0) // 2)
    return max(0, x0 - margin), max(0, y0 - margin), min(w, x1 + margin), min(h, y1 + margin)
