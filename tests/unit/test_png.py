"""PNG at the byte level, on answers held in pieces: checks, sizes and metadata, never a decode."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image

from batch_inpaint import png
from batch_inpaint.hashing import content_hash, fingerprint, same_content
from batch_inpaint.pieces import Pieces


def picture(w: int = 64, h: int = 48) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def split(data: bytes, seed: int) -> Pieces:
    """Cut anywhere: the pieces an answer arrives in fall across chunk boundaries and headers alike."""
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), 20)) + [len(data)]
    at, parts = 0, []
    for cut in cuts:
        parts.append(data[at:cut])
        at = cut
    return Pieces(parts)


@pytest.mark.parametrize("seed", range(5))
def test_a_whole_png_passes_in_any_pieces(seed: int) -> None:
    data = picture()
    assert png.check(split(data, seed)) == (64, 48)
    assert png.check(Pieces([data[i:i + 1] for i in range(len(data))])) == (64, 48)  # a byte at a time
    assert png.size(split(data, seed).head(24)) == (64, 48)


@pytest.mark.parametrize("damage, reason, pillow_too", [
    (lambda d: d[:-30], "truncated", True),
    (lambda d: d[:200] + bytes([d[200] ^ 1]) + d[201:], "fails its CRC", True),
    (lambda d: b"GIF89a" + d[6:], "not a PNG", True),
    (lambda d: d[:8] + png.chunk(b"tEXt", b"a\x00b") + d[8:], "does not start with an IHDR", False),
])
def test_damage_anywhere_is_caught(damage, reason: str, pillow_too: bool) -> None:  # type: ignore[no-untyped-def]
    data = damage(picture())
    with pytest.raises(png.BrokenPng, match=reason):
        png.check(split(data, 1))
    if pillow_too:  # the check Pillow's verify() makes, and one stricter (IHDR first, as the format says)
        with pytest.raises(Exception):
            Image.open(io.BytesIO(data)).verify()


def test_metadata_goes_in_without_copying_the_body_and_comes_out_whole() -> None:
    data = picture()
    exif = Image.Exif()
    exif[0x010F] = "Cam"
    icc = b"\x00" * 128 + b"profile"
    pieces = split(data, 2)
    out = png.with_metadata(pieces, icc=icc, exif=exif.tobytes())
    assert any(part is p for part in out for p in pieces.parts)  # the body's pieces are the answer's own
    joined = out.joined()
    assert png.check(out) == (64, 48)
    with Image.open(io.BytesIO(joined)) as im:
        assert im.info["icc_profile"] == icc
        assert im.getexif()[0x010F] == "Cam"
        assert np.array_equal(np.asarray(im), np.asarray(Image.open(io.BytesIO(data))))
    assert png.without_metadata(joined) == data
    assert png.with_metadata(pieces, icc=None, exif=None) is pieces


def test_hashes_do_not_depend_on_the_pieces() -> None:
    data = picture()
    assert fingerprint(split(data, 3)) == fingerprint(data) and fingerprint(data).startswith("xxh128:")
    assert same_content(fingerprint(data), split(data, 4))
    assert not same_content(fingerprint(data), data[:-1])
    legacy = content_hash(data, "sha256")  # how manifests before XXH128 recorded outputs
    assert same_content(legacy, split(data, 5)) and not same_content(legacy, data + b"x")
    assert len(content_hash(data)) == len(legacy) == 32 and content_hash(data) != legacy
