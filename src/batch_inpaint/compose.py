"""From the engine's PNG to the file the user keeps: blend back, restore metadata, encode."""

from __future__ import annotations

import io

from PIL import Image

from . import imaging
from .errors import BrokenResponse, InvalidInput
from .preflight import Prepared


def needs_pixels(prepared: Prepared, fmt: str) -> bool:
    return prepared.placement is not None or fmt != "png"


def finish(prepared: Prepared, result_png: bytes | None, fmt: str, quality: int) -> bytes:
    """The bytes to write. ``result_png`` None means the original itself (an empty mask the user wants copied)."""
    if result_png is not None and not needs_pixels(prepared, fmt):
        return imaging.add_png_metadata(result_png, icc=prepared.icc, exif=prepared.exif)
    picture = _picture(prepared, result_png)
    return _encode(picture, prepared, fmt, quality)


def _original(prepared: Prepared) -> Image.Image:
    try:
        data = prepared.pair.image.read_bytes()
        return imaging.upright(imaging.open_image(data))
    except (OSError, imaging.UnreadableImage) as exc:
        raise InvalidInput(f"image changed or vanished while it was processed: {exc}") from None


def _picture(prepared: Prepared, result_png: bytes | None) -> Image.Image:
    if result_png is None:
        return _original(prepared)
    try:
        result = imaging.load_pixels(Image.open(io.BytesIO(result_png)))
    except imaging.UnreadableImage as exc:
        raise BrokenResponse(f"result PNG does not decode: {exc}") from None
    placement = prepared.placement
    if placement is None:
        return result
    original = _original(prepared)
    mode = "RGBA" if "A" in original.mode or "A" in result.mode else "RGB"
    original = original.convert(mode)
    box = placement.box
    size = (box[2] - box[0], box[3] - box[1])
    patch = result.convert(mode)
    if patch.size != size:
        patch = patch.resize(size, Image.Resampling.LANCZOS)
    assert prepared.full_mask_png is not None
    full_mask = Image.open(io.BytesIO(prepared.full_mask_png))
    original.paste(patch, box[:2], full_mask.crop(box))
    return original


def _encode(picture: Image.Image, prepared: Prepared, fmt: str, quality: int) -> bytes:
    buf = io.BytesIO()
    extra: dict[str, object] = {}
    if prepared.icc:
        extra["icc_profile"] = prepared.icc
    if prepared.exif:
        extra["exif"] = prepared.exif
    if fmt == "jpg":
        picture.convert("RGB").save(buf, "JPEG", quality=quality, **extra)
    elif fmt == "webp":
        picture.save(buf, "WEBP", quality=quality, **extra)
    else:
        picture.save(buf, "PNG", compress_level=6, **extra)
    return buf.getvalue()
