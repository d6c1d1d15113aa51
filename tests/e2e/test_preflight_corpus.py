"""Every messy-folder case through the real CLI and the emulator: fixed before upload, or reported, never paid for."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .. import corpus
from ..conftest import run_cli
from .helpers import check_output


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    corpus.build(tmp_path / "corpus")
    return tmp_path / "corpus"


def test_the_corpus_end_to_end(emulator, corpus_dir: Path, tmp_path: Path) -> None:
    assert len(corpus.CASES) >= 30
    emu = emulator()
    out = tmp_path / "out"
    result = run_cli("run", str(corpus_dir / "photos"), "--masks", str(corpus_dir / "masks"), "--out", str(out),
                     "--api-url", emu.url, "--rate", "1200", "--progress", "none", key="test-key")
    assert result.returncode == 1, result.stderr  # some items are invalid
    statuses = [e["status"] for e in emu.entries()]
    assert statuses and set(statuses) == {200}, "the API saw a request it would reject"
    assert "mask without an image" in result.stderr and "orphan.png" in result.stderr

    exported = run_cli("export", str(out), "--format", "csv").stdout
    rows = {r["key"]: r for r in csv.DictReader(io.StringIO(exported))}
    for case in corpus.CASES:
        row = rows.get(case.image_name)
        if case.status == "unseen":
            assert row is None, case.name
            continue
        assert row is not None, f"{case.name}: not in the export"
        assert row["status"] == case.status, f"{case.name}: {row['status']} ({row['error']})"
        if case.status == "invalid":
            assert case.words in row["error"], f"{case.name}: reason {row['error']!r}"
            assert case.image_name in result.stderr
        if case.status == "done":
            fixes = json.loads(row["fixes"]) if row["fixes"] else []
            assert case.words in " ".join(fixes) if case.words else True, f"{case.name}: fixes {fixes}"
            output = out / corpus.output_name(case)
            with Image.open(output) as im:
                im.load()
                assert im.size == case.size, f"{case.name}: output is {im.size}"
                assert 0x0112 not in im.getexif(), f"{case.name}: orientation tag left on the output"
    for name in ("plain-jpeg.jpg", "rot6.jpg", "rot3.jpg", "rot8.jpg", "webp.webp", "cmyk.jpg", "deep.png",
                 "grey-mask.jpg", "alpha-mask.jpg", "deep-mask.jpg", "pal-mask.jpg", "icc.jpg", "twin.jpg"):
        case = next(c for c in corpus.CASES if c.image_name == name)
        check_output(corpus_dir / "photos" / name, corpus_dir / "masks" / str(case.mask_name),
                     out / corpus.output_name(case))
    status = run_cli("status", str(out)).stdout
    assert "invalid 7" in status and "empty_mask 1" in status and "no_mask 1" in status


def test_metadata_and_output_formats(emulator, corpus_dir: Path, tmp_path: Path) -> None:
    emu = emulator()
    for fmt in ("png", "jpg", "webp"):
        out = tmp_path / f"out-{fmt}"
        result = run_cli("run", str(corpus_dir / "photos"), "--masks", str(corpus_dir / "masks"), "--out", str(out),
                         "--include", "icc.jpg", "--include", "rot6.jpg", "--output-format", fmt,
                         "--api-url", emu.url, "--rate", "1200", key="test-key")
        assert result.returncode == 0, result.stderr
        with Image.open(out / f"icc.{fmt}") as im:
            assert im.info.get("icc_profile"), f"{fmt}: ICC profile lost"
            assert im.getexif().get(0x010F) == "CorpusCam", f"{fmt}: EXIF lost"
        with Image.open(out / f"rot6.{fmt}") as im:
            assert im.size == (corpus.W, corpus.H) and 0x0112 not in im.getexif()


def test_plan_says_what_a_run_would_do_and_sends_nothing(emulator, corpus_dir: Path, tmp_path: Path) -> None:
    emu = emulator()
    result = run_cli("plan", str(corpus_dir / "photos"), "--masks", str(corpus_dir / "masks"),
                     "--out", str(tmp_path / "out"), "--api-url", emu.url, key="test-key")
    assert result.returncode == 1, result.stderr  # as the run would: some items are invalid
    text = result.stdout
    assert "invalid: 7" in text and "without a mask: 1" in text and "empty masks (nothing to remove): 1" in text
    assert "masks without an image: 1" in text
    ready = int(text.split("ready to send: ")[1].split()[0])
    fix = int(text.split("need a fix first: ")[1].split()[0])
    assert ready + fix == 27
    credits = int(text.split("credits needed: ")[1].split()[0])
    assert credits < 27  # pictures converted to the same PNG make one request, paid once
    assert "truncated" in text and "rotated upright" in text
    assert emu.entries() == []
    dry = run_cli("run", str(corpus_dir / "photos"), "--masks", str(corpus_dir / "masks"),
                  "--out", str(tmp_path / "out"), "--dry-run", "--api-url", emu.url, key="test-key")
    assert dry.stdout == text and emu.entries() == []
    assert not (tmp_path / "out").exists()
    paid = run_cli("run", str(corpus_dir / "photos"), "--masks", str(corpus_dir / "masks"),
                   "--out", str(tmp_path / "out"), "--api-url", emu.url, "--rate", "600", key="test-key")
    assert paid.returncode == 1, paid.stderr  # the invalid ones
    assert emu.charged() == credits  # the plan's figure is exact


@pytest.mark.slow
def test_real_size_pictures_are_fitted_and_blended_back(emulator, tmp_path: Path) -> None:
    from batch_inpaint.synthetic import scene

    photos, masks = tmp_path / "p", tmp_path / "m"
    photos.mkdir()
    masks.mkdir()
    big, big_mask = scene(5000, 3400, 9)  # 17 MP: over the API's 16
    big.save(photos / "big.jpg", quality=92)
    big_mask.save(masks / "big.png")
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (3000, 3500, 3), dtype=np.uint8))  # 10.5 MP, ~31 MB as PNG
    noise.save(photos / "heavy.png", compress_level=1)
    assert (photos / "heavy.png").stat().st_size > 30_000_000
    scene(3500, 3000, 1)[1].save(masks / "heavy.png")
    emu = emulator()
    out = tmp_path / "out"
    result = run_cli("run", str(photos), "--masks", str(masks), "--out", str(out), "--api-url", emu.url,
                     "--rate", "1200", key="test-key")
    assert result.returncode == 0, result.stderr
    assert {e["status"] for e in emu.entries()} == {200}
    assert "downscaled" in result.stderr and "high-quality JPEG" in result.stderr
    with Image.open(out / "big.png") as im:
        assert im.size == (5000, 3400)
        after = np.asarray(im.convert("RGB"))
    before = np.asarray(Image.open(photos / "big.jpg").convert("RGB"))
    untouched = np.asarray(big_mask) == 0
    assert np.array_equal(after[untouched], before[untouched])  # every untouched pixel keeps its value
    with Image.open(out / "heavy.png") as im:
        assert im.size == (3500, 3000)


def _grainy(w: int, h: int, seed: int) -> tuple[Image.Image, Image.Image]:
    """A photograph-like picture with fine grain: no lossless encoding packs 16 MP of it in 30 MB."""
    from batch_inpaint.synthetic import scene

    small, small_mask = scene(w // 4, h // 4, seed)
    base = np.asarray(small.resize((w, h), Image.Resampling.BICUBIC), dtype=np.int16)
    grain = np.random.default_rng(seed).integers(-12, 13, (h, w, 3), dtype=np.int16)
    return (Image.fromarray(np.clip(base + grain, 0, 255).astype(np.uint8)),
            small_mask.resize((w, h), Image.Resampling.NEAREST))


@pytest.mark.slow
def test_pictures_no_lossless_upload_fits_are_sent_as_jpeg_and_restored_outside_the_mask(
        emulator, tmp_path: Path) -> None:
    """Over 30 MB as a PNG, or holding what the API's formats cannot carry (16 bits, CMYK, alpha): sent as
    the API takes them, and every pixel outside the mask is the original's, exactly."""
    photos, masks, out = tmp_path / "p", tmp_path / "m", tmp_path / "out"
    photos.mkdir()
    masks.mkdir()
    grainy, grainy_mask = _grainy(4600, 3470, 3)  # 16.0 MP
    grainy.save(photos / "grain.png")
    rgba = np.dstack([255 - np.asarray(grainy), np.broadcast_to(np.linspace(0, 255, 4600, dtype=np.uint8), (3470, 4600))])
    Image.fromarray(rgba, "RGBA").save(photos / "alpha.png")
    small, small_mask = _grainy(1200, 800, 4)
    deep = (np.asarray(small.convert("L"), dtype=np.uint16) * 257 + np.arange(800 * 1200).reshape(800, 1200) % 257)
    Image.fromarray(deep.astype(np.uint16)).save(photos / "deep16.png")
    small.convert("CMYK").save(photos / "cmyk.jpg", quality=95)
    for name, mask in (("grain", grainy_mask), ("alpha", grainy_mask), ("deep16", small_mask), ("cmyk", small_mask)):
        mask.save(masks / f"{name}.png")
    for name in ("grain.png", "alpha.png"):
        assert (photos / name).stat().st_size > 30_000_000, name
    with Image.open(photos / "deep16.png") as im:
        assert im.mode == "I;16"

    emu = emulator()
    result = run_cli("run", str(photos), "--masks", str(masks), "--out", str(out), "--api-url", emu.url,
                     "--rate", "1200", "--progress", "none", key="test-key")
    assert result.returncode == 0, result.stderr
    assert [e["status"] for e in emu.entries()] == [200] * 4
    rows = {r["key"]: r for r in csv.DictReader(io.StringIO(run_cli("export", str(out), "--format", "csv").stdout))}
    for name in ("grain.png", "alpha.png"):
        assert "sent as a high-quality JPEG" in rows[name]["fixes"], rows[name]
    for name in rows:
        assert "every pixel outside the mask kept from the original" in rows[name]["fixes"], rows[name]

    def same_outside(name: str, original: np.ndarray, mask: Image.Image) -> None:
        with Image.open(out / f"{Path(name).stem}.png") as im:
            after = np.asarray(im)
        inside = np.asarray(mask) > 0
        assert after.shape == original.shape, name
        assert np.array_equal(after[~inside], original[~inside]), f"{name}: an untouched pixel changed"
        assert not np.array_equal(after[inside], original[inside]), f"{name}: the masked region was not cleaned"

    same_outside("grain.png", np.asarray(grainy), grainy_mask)
    same_outside("alpha.png", rgba, grainy_mask)  # the alpha channel too
    same_outside("deep16.png", deep.astype(np.uint16), small_mask)  # all 16 bits
    with Image.open(photos / "cmyk.jpg") as im:
        same_outside("cmyk.jpg", np.asarray(im.convert("RGB")), small_mask)
