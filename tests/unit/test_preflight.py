"""Preflight decisions on small pictures written to disk."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from batch_inpaint import preflight
from batch_inpaint.errors import InvalidInput
from batch_inpaint.pairing import FileSig, Pair
from batch_inpaint.preflight import PreflightOptions, dilation_radius, prepare
from batch_inpaint.synthetic import jpeg_bytes, png_bytes, scene


def pair_of(tmp_path: Path, image: bytes, mask: bytes, name: str = "x.jpg") -> Pair:
    (tmp_path / name).write_bytes(image)
    (tmp_path / "m.png").write_bytes(mask)
    return Pair(name, str(tmp_path / name), str(tmp_path / "m.png"), "x", FileSig.of(tmp_path / name),
                FileSig.of(tmp_path / "m.png"))


def test_clean_jpeg_and_mask_go_out_untouched(tmp_path: Path) -> None:
    picture, mask = scene(120, 80, 1)
    image, mask_png = jpeg_bytes(picture), png_bytes(mask)
    prepared = prepare(pair_of(tmp_path, image, mask_png), PreflightOptions())
    assert prepared.image_bytes == image and prepared.mask_png == mask_png
    assert prepared.image_type == "image/jpeg" and prepared.fixes == () and prepared.placement is None


def test_mask_size_mismatch_and_resize(tmp_path: Path) -> None:
    picture, _ = scene(120, 80, 1)
    _, small = scene(60, 40, 1)
    pair = pair_of(tmp_path, jpeg_bytes(picture), png_bytes(small))
    with pytest.raises(InvalidInput, match="mask is 60x40 but the image is 120x80"):
        prepare(pair, PreflightOptions())
    prepared = prepare(pair, PreflightOptions(resize_mask=True))
    assert prepared.size == (120, 80) and "mask resized from 60x40" in prepared.fixes


def test_dilation_by_pixels_and_percent() -> None:
    pixels = np.zeros((100, 100), np.uint8)
    pixels[40:60, 30:70] = 255
    mask = Image.fromarray(pixels)
    assert dilation_radius("12", mask) == 12 and dilation_radius("12px", mask) == 12
    assert dilation_radius("15%", mask) == 3  # 15% of a 40 px object, half on each side
    with pytest.raises(ValueError):
        dilation_radius("lots", mask)


def test_dilate_grows_the_sent_mask(tmp_path: Path) -> None:
    picture, mask = scene(120, 80, 1)
    prepared = prepare(pair_of(tmp_path, jpeg_bytes(picture), png_bytes(mask)), PreflightOptions(dilate="5"))
    sent = np.asarray(Image.open(io.BytesIO(prepared.mask_png)))
    assert (sent == 255).sum() > (np.asarray(mask) == 255).sum()
    assert set(np.unique(sent)) <= {0, 255}


@pytest.mark.parametrize("oversize", ["downscale", "crop", "fail"])
def test_oversize_pictures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, oversize: str) -> None:
    monkeypatch.setattr(preflight, "API_MAX_PIXELS", 4000)  # a 100x60 picture is "over" the limit
    picture, mask = scene(100, 60, 2)
    pair = pair_of(tmp_path, jpeg_bytes(picture), png_bytes(mask))
    if oversize == "fail":
        with pytest.raises(InvalidInput, match="oversize = fail"):
            prepare(pair, PreflightOptions(oversize=oversize))
        return
    prepared = prepare(pair, PreflightOptions(oversize=oversize))
    assert prepared.size[0] * prepared.size[1] <= 4000
    assert prepared.original_size == (100, 60) and prepared.placement is not None
    with Image.open(io.BytesIO(prepared.image_bytes)) as sent:
        assert sent.size == prepared.size


def test_heavy_files_are_re_encoded_to_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 120, 3), dtype=np.uint8))
    _, mask = scene(120, 80, 1)
    data = png_bytes(noise)
    monkeypatch.setattr(preflight, "API_MAX_BYTES", len(data) - 1)
    prepared = prepare(pair_of(tmp_path, data, png_bytes(mask), "n.png"), PreflightOptions())
    assert len(prepared.image_bytes) < len(data)
    # noise packs no better at zlib's best level: it goes as a JPEG, pasted back inside the mask only
    assert prepared.image_type == "image/jpeg" and any("high-quality JPEG" in fix for fix in prepared.fixes)
    assert prepared.placement is not None and prepared.placement.box == (0, 0, 120, 80)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    pair = Pair("x.jpg", str(tmp_path / "nope.jpg"), str(tmp_path / "nope.png"), "x")
    with pytest.raises(InvalidInput, match="cannot be read"):
        prepare(pair, PreflightOptions())
    with pytest.raises(InvalidInput, match="no mask"):
        prepare(Pair("x.jpg", str(tmp_path / "x.jpg"), None, "x"), PreflightOptions())
