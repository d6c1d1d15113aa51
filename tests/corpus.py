"""The bad-input corpus: every kind of messy picture folder case, each with the outcome it must have.

Run as a script to write it somewhere to look at: ``python -m tests.corpus /tmp/corpus``.
"""

from __future__ import annotations

import io
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageCms, ImageDraw, ImageFilter

from batch_inpaint.synthetic import scene

W, H = 96, 64


@dataclass(frozen=True)
class Case:
    name: str
    image_name: str
    make_image: Callable[[], bytes] | None
    mask_name: str | None
    make_mask: Callable[[], bytes] | None
    status: str  # done, invalid, no_mask, empty_mask, unseen
    words: str = ""  # in the reason (invalid) or in the fixes (done)
    size: tuple[int, int] = (W, H)  # the output's size: the picture as the user sees it


def picture(w: int = W, h: int = H, seed: int = 1) -> Image.Image:
    return scene(w, h, seed)[0]


def object_mask(w: int = W, h: int = H, seed: int = 1) -> Image.Image:
    return scene(w, h, seed)[1]


def save(im: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def jpeg(im: Image.Image, **options: object) -> bytes:
    return save(im.convert("RGB") if im.mode not in ("RGB", "L", "CMYK") else im, "JPEG", quality=90, **options)


def png(im: Image.Image) -> bytes:
    return save(im, "PNG")


def mask_png() -> bytes:
    return png(object_mask())


def rotated_jpeg(orientation: int) -> bytes:
    """Pixels stored turned, with the EXIF tag that turns them back: the user sees a W x H picture."""
    upright = picture()
    stored = {6: upright.transpose(Image.Transpose.ROTATE_90), 3: upright.transpose(Image.Transpose.ROTATE_180),
              8: upright.transpose(Image.Transpose.ROTATE_270)}[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "CorpusCam"
    return jpeg(stored, exif=exif.tobytes())


def grey_edged_mask() -> bytes:
    return png(object_mask().filter(ImageFilter.GaussianBlur(2)))


def alpha_mask() -> bytes:
    m = np.asarray(object_mask())
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = m
    return png(Image.fromarray(rgba))


def sixteen_bit_mask() -> bytes:
    m = (np.asarray(object_mask()).astype(np.uint16) * 257)
    return png(Image.fromarray(m))


def sixteen_bit_image() -> bytes:
    grey = np.asarray(picture().convert("L")).astype(np.uint16) * 257
    return png(Image.fromarray(grey))


def truncated(data: bytes) -> bytes:
    return data[: len(data) * 2 // 3]


def bomb_png() -> bytes:
    """A valid PNG header claiming 30000 x 30000 pixels, with a tiny (wrong) body."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")
    ihdr = (30000).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")


def icc_jpeg() -> bytes:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "CorpusCam"
    return jpeg(picture(), icc_profile=profile, exif=exif.tobytes())


def full_mask() -> bytes:
    m = Image.new("L", (W, H), 255)
    ImageDraw.Draw(m).rectangle((0, 0, 6, 6), fill=0)
    return png(m)


CASES: list[Case] = [
    Case("plain-jpeg", "plain-jpeg.jpg", lambda: jpeg(picture()), "plain-jpeg.png", mask_png, "done"),
    Case("plain-png", "plain-png.png", lambda: png(picture()), "plain-png.png", mask_png, "done"),
    Case("rgba-png", "rgba-png.png", lambda: png(picture().convert("RGBA")), "rgba-png.png", mask_png, "done"),
    Case("palette-png", "palette-png.png", lambda: png(picture().convert("P")), "palette-png.png", mask_png, "done"),
    Case("grey-png", "grey-png.png", lambda: png(picture().convert("L")), "grey-png.png", mask_png, "done"),
    Case("upper-case-ext", "UPPER.JPG", lambda: jpeg(picture()), "UPPER.png", mask_png, "done"),
    Case("webp", "webp.webp", lambda: save(picture(), "WEBP", lossless=True), "webp.png", mask_png, "done", "converted from WEBP"),
    Case("tiff", "tiff.tif", lambda: save(picture(), "TIFF"), "tiff.png", mask_png, "done", "converted from TIFF"),
    Case("bmp", "bmp.bmp", lambda: save(picture(), "BMP"), "bmp.png", mask_png, "done", "converted from BMP"),
    Case("gif", "gif.gif", lambda: save(picture().convert("P"), "GIF"), "gif.png", mask_png, "done", "converted from GIF"),
    Case("exif-rotated-6", "rot6.jpg", lambda: rotated_jpeg(6), "rot6.png", mask_png, "done", "rotated upright"),
    Case("exif-rotated-3", "rot3.jpg", lambda: rotated_jpeg(3), "rot3.png", mask_png, "done", "rotated upright"),
    Case("exif-rotated-8", "rot8.jpg", lambda: rotated_jpeg(8), "rot8.png", mask_png, "done", "rotated upright"),
    Case("cmyk-jpeg", "cmyk.jpg", lambda: jpeg(picture().convert("CMYK")), "cmyk.png", mask_png, "done", "converted CMYK"),
    Case("16-bit-png", "deep.png", sixteen_bit_image, "deep.png", mask_png, "done", "converted I;16 pixels to 8-bit"),
    Case("icc-and-exif", "icc.jpg", icc_jpeg, "icc.png", mask_png, "done"),
    Case("grey-edged-mask", "grey-mask.jpg", lambda: jpeg(picture()), "grey-mask.png", grey_edged_mask, "done", "thresholded"),
    Case("jpeg-mask", "jpeg-mask.jpg", lambda: jpeg(picture()), "jpeg-mask.jpg", lambda: jpeg(object_mask()), "done", "mask converted"),
    Case("rgb-mask", "rgb-mask.jpg", lambda: jpeg(picture()), "rgb-mask.png", lambda: png(object_mask().convert("RGB")), "done", "mask converted"),
    Case("1-bit-mask", "bit-mask.jpg", lambda: jpeg(picture()), "bit-mask.png", lambda: png(object_mask().convert("1")), "done", "mask converted"),
    Case("palette-mask", "pal-mask.jpg", lambda: jpeg(picture()), "pal-mask.png", lambda: png(object_mask().convert("P")), "done", "mask converted"),
    Case("16-bit-mask", "deep-mask.jpg", lambda: jpeg(picture()), "deep-mask.png", sixteen_bit_mask, "done", "mask converted"),
    Case("alpha-mask", "alpha-mask.jpg", lambda: jpeg(picture()), "alpha-mask.png", alpha_mask, "done", "mask converted"),
    Case("mostly-masked", "mostly.jpg", lambda: jpeg(picture()), "mostly.png", full_mask, "done"),
    Case("empty-mask", "empty.jpg", lambda: jpeg(picture()), "empty.png", lambda: png(Image.new("L", (W, H), 0)), "empty_mask"),
    Case("mask-wrong-size", "wrong.jpg", lambda: jpeg(picture()), "wrong.png", lambda: png(object_mask(50, 40)), "invalid", "mask is 50x40 but the image is 96x64"),
    Case("truncated-jpeg", "trunc.jpg", lambda: truncated(jpeg(picture(400, 300))), "trunc.png", lambda: png(object_mask(400, 300)), "invalid", "truncated"),
    Case("truncated-png", "trunc-png.png", lambda: truncated(png(picture())), "trunc-png.png", mask_png, "invalid", "truncated"),
    Case("empty-file", "zero.jpg", lambda: b"", "zero.png", mask_png, "invalid", "empty file"),
    Case("not-an-image", "text.jpg", lambda: b"hello, I am not a picture\n" * 10, "text.png", mask_png, "invalid", "not a readable image"),
    Case("decompression-bomb", "bomb.png", bomb_png, "bomb.png", mask_png, "invalid", "decompression bomb"),
    Case("broken-mask", "broken-mask.jpg", lambda: jpeg(picture()), "broken-mask.png", lambda: b"\x89PNG\r\n\x1a\nrubbish", "invalid", "mask"),
    Case("no-mask", "lonely.jpg", lambda: jpeg(picture()), None, None, "no_mask"),
    Case("hidden-file", ".hidden.jpg", lambda: jpeg(picture()), ".hidden.png", mask_png, "unseen"),
    Case("same-stem-jpg", "twin.jpg", lambda: jpeg(picture(seed=3)), "twin.png", lambda: png(object_mask(seed=3)), "done"),
    Case("same-stem-png", "twin.png", lambda: png(picture(seed=3)), None, None, "done"),  # shares twin.png's mask
    Case("tiny-1x1", "tiny.png", lambda: png(Image.new("RGB", (1, 1), (9, 9, 9))), "tiny.png", lambda: png(Image.new("L", (1, 1), 255)), "done", size=(1, 1)),
]


def output_name(case: Case) -> str:
    stem = case.image_name.rsplit(".", 1)[0]
    if stem == "twin":
        return case.image_name + ".png"  # two images share the stem: both keep their extension
    return stem + ".png"


def build(root: Path) -> dict[str, Case]:
    """Write photos/ and masks/ (mirrored) under root; return the cases by image name."""
    (root / "photos").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for case in CASES:
        if case.make_image is not None:
            (root / "photos" / case.image_name).write_bytes(case.make_image())
        if case.mask_name is not None and case.make_mask is not None:
            (root / "masks" / case.mask_name).write_bytes(case.make_mask())
    (root / "masks" / "orphan.png").write_bytes(mask_png())
    return {case.image_name: case for case in CASES}


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "corpus")
    build(target)
    print(f"wrote {len(CASES)} cases under {target}")
