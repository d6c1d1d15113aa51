"""From the engine's PNG to the file the user keeps: blend back, restore metadata, encode."""

from __future__ import annotations

import io
from typing import Awaitable, Callable

from PIL import Image

from . import imaging, png
from .errors import BrokenResponse, InvalidInput
from .pieces import Pieces
from .preflight import Prepared


#: From the engine's PNG (None: the original itself) to the bytes to write, in a worker thread; a result
#: that does not decode is a BrokenResponse (retried).
Finish = Callable[[Prepared, Pieces | None], Awaitable[Pieces]]


def needs_pixels(prepared: Prepared, fmt: str) -> bool:
    return prepared.placement is not None or fmt != "png"


def finish(prepared: Prepared, result_png: Pieces | None, fmt: str, quality: int) -> Pieces:
    """The bytes to write. ``result_png`` None means the original itself (an empty mask the user wants copied).

    A PNG output of the whole picture is the answer with the original's metadata put back: its pixels
    are neither decoded nor re-encoded, and its pieces are never joined."""
    if result_png is not None and not needs_pixels(prepared, fmt):
        return png.with_metadata(result_png, icc=prepared.icc, exif=prepared.exif)
    picture = _picture(prepared, result_png)
    return Pieces.of(_encode(picture, prepared, fmt, quality))


def _original(prepared: Prepared) -> Image.Image:
    try:
        data = prepared.pair.image.read_bytes()
        return imaging.upright(imaging.open_image(data))
    except (OSError, imaging.UnreadableImage) as exc:
        raise InvalidInput(f"image changed or vanished while it was processed: {exc}") from None


def _picture(prepared: Prepared, result_png: Pieces | None) -> Image.Image:
    if result_png is None:
        return _original(prepared)
    try:
        result = imaging.load_pixels(Image.open(io.BytesIO(result_png.joined())))
    except imaging.UnreadableImage as exc:
        raise BrokenResponse(f"result PNG does not decode: {exc}") from None
    placement = prepared.placement
    if placement is None:
        return result
    original = _original(prepared)
    box = placement.box
    size = (box[2] - box[0], box[3] - box[1])
    assert prepared.full_mask_png is not None
    mask = Image.open(io.BytesIO(prepared.full_mask_png)).crop(box)
    if original.mode.startswith("I;16"):  # 16-bit grey: the file keeps its depth outside the mask
        grey = result.convert("L")
        if grey.size != size:
            grey = grey.resize(size, Image.Resampling.LANCZOS)
        return _paste_sixteen_bit(original, grey, box, mask)
    mode = "RGBA" if "A" in original.mode or "A" in result.mode else "RGB"
    original = original.convert(mode)
    patch = result.convert(mode)
    if patch.size != size:
        patch = patch.resize(size, Image.Resampling.LANCZOS)
    original.paste(patch, box[:2], mask)
    return original


def _paste_sixteen_bit(original: Image.Image, grey: Image.Image, box: tuple[int, int, int, int],
                       mask: Image.Image) -> Image.Image:
    """Pillow's masked paste treats 16-bit pixels as byte pairs, so it is done here, with NumPy."""
    import numpy as np  # only for 16-bit pictures

    pixels = np.array(original.convert("I;16"), dtype=np.uint16)
    region = pixels[box[1]:box[3], box[0]:box[2]]
    inside = np.asarray(mask) > 0
    region[inside] = np.asarray(grey, dtype=np.uint16)[inside] * 257  # 255 becomes 65535
    return Image.fromarray(pixels)


def _encode(picture: Image.Image, prepared: Prepared, fmt: str, quality: int) -> bytes:
    if fmt != "png" and picture.mode in imaging.DEEP_MODES:
        picture = imaging.eight_bit(picture)  # JPEG and WebP hold 8 bits: scaled, not clipped
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
