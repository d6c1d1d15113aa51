"""Checks on real outputs: the picture is whole, the right size, untouched outside the mask, cleaned inside."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        upright = ImageOps.exif_transpose(im)
        if upright.mode.startswith("I"):  # 16-bit: scale, as Pillow's convert would clip
            grey = (np.asarray(upright).astype(np.float64) / 257.0).round()
            return np.repeat(grey[:, :, None], 3, axis=2).astype(np.int16)
        return np.asarray(upright.convert("RGB")).astype(np.int16)


def check_output(photo: Path, mask: Path, output: Path) -> None:
    """Raises AssertionError naming the file when the output is not a correct cleanup of the photo."""
    with Image.open(output) as im:
        im.load()  # decodes every byte: a truncated or corrupt file fails here
    before, after = load_rgb(photo), load_rgb(output)
    assert before.shape == after.shape, f"{output}: size {after.shape} differs from {before.shape}"
    with Image.open(mask) as m:
        inside = np.asarray(m.convert("L")) >= 128
    outside_diff = np.abs(before - after)[~inside].mean()
    assert outside_diff < 3.0, f"{output}: pixels outside the mask changed (mean diff {outside_diff:.1f})"
    if inside.any():
        inside_diff = np.abs(before - after)[inside].mean()
        assert inside_diff > 5.0, f"{output}: the masked object is still there (mean diff {inside_diff:.1f})"


def pairs_of(data: Path) -> list[tuple[Path, Path, str]]:
    """(photo, mask, relative output) for a tree made by synthetic.write_tree with mirrored masks."""
    found = []
    for photo in sorted((data / "photos").rglob("*.jpg")):
        rel = photo.relative_to(data / "photos")
        found.append((photo, data / "masks" / rel.with_suffix(".png"), str(rel.with_suffix(".png"))))
    return found


def write_config(path: Path, **values: object) -> Path:
    lines = []
    for key, value in values.items():
        if isinstance(value, str):
            lines.append(f'{key.replace("_", "-")} = "{value}"')
        elif isinstance(value, bool):
            lines.append(f'{key.replace("_", "-")} = {"true" if value else "false"}')
        else:
            lines.append(f'{key.replace("_", "-")} = {value}')
    path.write_text("\n".join(lines) + "\n")
    return path


FAST_RETRIES = dict(backoff_base=0.05, backoff_cap=0.5, read_timeout=3.0, request_deadline=4.0, connect_timeout=2.0)


def copy_slowly(source: Path, target: Path, chunks: int = 5, pause: float = 0.6) -> None:
    """A copy a watch sees half-done: ``chunks`` writes, ``pause`` seconds apart."""
    data = source.read_bytes()
    size = len(data) // chunks + 1
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as fh:
        for start in range(0, len(data), size):
            fh.write(data[start:start + size])
            fh.flush()
            time.sleep(pause)
