"""Synthetic but real-looking photos with an object to remove, and its mask: for samples, tests, benchmarks."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def scene(width: int, height: int, seed: int, *, grain: float = 0.0) -> tuple[Image.Image, Image.Image]:
    """A landscape (sky, hills, ground texture) with a coloured object on it; the mask covers the object.

    ``grain`` adds sensor-like noise of that many levels (luminance, and half as much per channel): what
    makes a real photograph's PNG 16 MB at 12 MP where a smooth drawing packs into a few.
    """
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height)[:, None, None]
    sky = np.array([90, 150, 230]) * (1 - y) + np.array([200, 225, 250]) * y
    ground = np.array([95, 130, 60]) + rng.normal(0, 12, (height, width, 3))
    horizon = int(height * (0.45 + 0.1 * rng.random()))
    hills = (horizon + 20 * np.sin(np.linspace(0, 3 + 4 * rng.random(), width) + rng.random() * 6)).astype(int)
    rows = np.arange(height)[:, None]
    pixels = np.where((rows >= hills[None, :])[:, :, None], ground, np.broadcast_to(sky, (height, width, 3)))
    picture = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1))
    draw = ImageDraw.Draw(picture)
    sun = (int(width * (0.15 + 0.7 * rng.random())), int(horizon * 0.3))
    r = max(4, width // 25)
    draw.ellipse((sun[0] - r, sun[1] - r, sun[0] + r, sun[1] + r), fill=(255, 240, 180))
    ow, oh = max(8, width // 6), max(6, height // 8)
    ox = int((width - ow) * rng.random())
    oy = min(height - oh - 1, horizon + int((height - horizon - oh) * rng.random()))
    colour = tuple(int(c) for c in rng.integers(20, 230, 3))
    draw.rounded_rectangle((ox, oy, ox + ow, oy + oh), radius=max(2, oh // 4), fill=colour)
    draw.ellipse((ox + ow // 8, oy + oh - oh // 4, ox + ow // 8 + oh // 2, oy + oh + oh // 4), fill=(25, 25, 25))
    draw.ellipse((ox + ow - ow // 8 - oh // 2, oy + oh - oh // 4, ox + ow - ow // 8, oy + oh + oh // 4), fill=(25, 25, 25))
    mask = Image.new("L", (width, height), 0)
    pad = max(3, oh // 6)
    ImageDraw.Draw(mask).rectangle((ox - pad, oy - pad, ox + ow + pad, oy + oh + oh // 4 + pad), fill=255)
    if grain > 0:
        noise = rng.normal(0, grain, (height, width, 1)) + rng.normal(0, grain / 2, (height, width, 3))
        picture = Image.fromarray(np.clip(np.asarray(picture) + noise, 0, 255).astype(np.uint8))
    return picture, mask


def jpeg_bytes(picture: Image.Image, quality: int = 85, **extra: object) -> bytes:
    buf = io.BytesIO()
    picture.convert("RGB").save(buf, "JPEG", quality=quality, **extra)
    return buf.getvalue()


def png_bytes(picture: Image.Image) -> bytes:
    buf = io.BytesIO()
    picture.save(buf, "PNG")
    return buf.getvalue()


def write_tree(root: Path, names: list[str], size: tuple[int, int] = (640, 480), *, sibling: bool = False,
               seed: int = 0) -> None:
    """Photos under ``root/photos`` and masks mirrored under ``root/masks`` (or beside them, ``x_mask.png``)."""
    for i, name in enumerate(names):
        picture, mask = scene(size[0], size[1], seed + i)
        photo = root / "photos" / f"{name}.jpg"
        photo.parent.mkdir(parents=True, exist_ok=True)
        photo.write_bytes(jpeg_bytes(picture))
        target = photo.with_name(f"{photo.stem}_mask.png") if sibling else root / "masks" / f"{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(png_bytes(mask))
