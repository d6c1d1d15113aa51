"""The second look at each result: the flags on real photographs, the strip, and a look that cannot fail an item."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

import anyio
import numpy as np
import pytest
from PIL import Image

from batch_inpaint import imaging, review
from batch_inpaint.engines.local import inpaint_png
from batch_inpaint.pairing import Pair
from batch_inpaint.pieces import Pieces
from batch_inpaint.preflight import Prepared
from batch_inpaint.stats import RunStats
from batch_inpaint.store import Fingerprint, MemoryStore, OutputRecord, SeenItem

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"
PHOTOS = ["coffee", "astronaut", "pad/rocket"]


def _inputs(name: str) -> tuple[bytes, bytes, np.ndarray, np.ndarray]:
    image = (SAMPLES / "photos" / f"{name}.jpg").read_bytes()
    mask = (SAMPLES / "masks" / f"{name}.png").read_bytes()
    pixels = np.asarray(Image.open(io.BytesIO(image)).convert("RGB"))
    inside = np.asarray(Image.open(io.BytesIO(mask))) > 127
    return image, mask, pixels, inside


def _png(pixels: np.ndarray) -> bytes:
    return imaging.encode_png(Image.fromarray(pixels.astype(np.uint8)))


def _codes(look: review.Look) -> list[str]:
    return [flag.split(":")[0] for flag in look.flags]


@pytest.mark.parametrize("name", PHOTOS)
def test_a_good_fill_is_not_flagged_and_each_bad_answer_is(name: str) -> None:
    image, mask, pixels, inside = _inputs(name)
    assert _codes(review.look(image, mask, inpaint_png(image, mask))) == []
    assert _codes(review.look(image, mask, _png(pixels))) == ["unchanged"]
    blob = pixels.copy()
    blob[inside] = (128, 120, 110)
    assert _codes(review.look(image, mask, _png(blob))) == ["flat_fill"]
    good = np.asarray(Image.open(io.BytesIO(inpaint_png(image, mask))).convert("RGB")).astype(int)
    assert _codes(review.look(image, mask, _png(np.clip(good + (0, 0, 25), 0, 255)))) == ["colour_shift"]
    # a few stray pixels outside the mask (a seam, JPEG noise) are no colour shift
    speckled = good.copy()
    speckled[::40, ::40] = 255
    assert _codes(review.look(image, mask, _png(speckled))) == []


def test_a_mask_over_most_of_the_picture_is_flagged_with_its_share() -> None:
    image, _, pixels, _ = _inputs("coffee")
    big = np.zeros(pixels.shape[:2], np.uint8)
    big[:, : pixels.shape[1] * 3 // 4] = 255
    mask = imaging.encode_png(Image.fromarray(big))
    look = review.look(image, mask, inpaint_png(image, mask))
    assert "large_mask: the mask covers 75% of the picture" in look.flags


def test_a_flat_fill_in_flat_surroundings_is_not_flagged() -> None:
    """A flat patch of sky filled flat is right: only texture around it makes a flat fill suspicious."""
    sky = np.full((300, 400, 3), (70, 110, 180), np.uint8)
    answer = sky.copy()
    sky[120:180, 170:230] = (30, 30, 30)  # a bird
    mask = np.zeros((300, 400), np.uint8)
    mask[100:200, 150:250] = 255
    look = review.look(_png(sky), imaging.encode_png(Image.fromarray(mask)), _png(answer))
    assert look.flags == ()


def test_the_strip_shows_three_panels_of_the_picture_and_is_a_small_jpeg() -> None:
    image, mask, _, _ = _inputs("pad/rocket")
    strip = Image.open(io.BytesIO(review.look(image, mask, inpaint_png(image, mask)).strip))
    assert strip.format == "JPEG" and strip.size == (3 * 160 + 8, 107)
    middle = np.asarray(strip)[:, 160 + 4: 2 * 160 + 4].astype(int)
    assert (middle[..., 0] - middle[..., 2]).max() > 100  # the mask drawn in red over the night sky


def test_names_of_strips_are_stable_and_spread_over_folders() -> None:
    assert review.thumb_name("a/b.jpg") == review.thumb_name("a/b.jpg") != review.thumb_name("a/c.jpg")
    assert len({review.thumb_name(f"{i}.jpg")[:2] for i in range(2000)}) > 200


def _prepared(key: str, image: bytes, mask: bytes) -> Prepared:
    return Prepared(Pair(key, f"/in/{key}", f"/masks/{key}", key[:-4]), image, "image/jpeg", mask, (600, 400), (600, 400),
                    "ih", "mh")


async def _done(store: MemoryStore, keys: list[str]) -> None:
    run = await store.start_run({}, 1)
    await store.record_seen([SeenItem(k, f"/in/{k}", f"/masks/{k}", None, None, "pending") for k in keys])
    for key in keys:
        await store.mark_in_flight(key, run, Fingerprint("i", "m", "s", "c"))
        await store.record_done(key, run, output=OutputRecord(key, "h", 1), credits=Decimal(1), remaining=None,
                                seconds=None, fingerprint=None)


@pytest.mark.asyncio
async def test_the_lane_looks_at_each_result_after_it_is_recorded(tmp_path: Path) -> None:
    image, mask, pixels, _ = _inputs("coffee")
    store, stats = MemoryStore(), RunStats()
    await _done(store, ["good.jpg", "same.jpg", "broken.jpg"])
    reviewer = review.Reviewer(tmp_path / "thumbs", store, stats)
    async with anyio.create_task_group() as tg:
        tg.start_soon(reviewer.run)
        await reviewer.offer(_prepared("good.jpg", image, mask), Pieces.of(inpaint_png(image, mask)))
        await reviewer.offer(_prepared("same.jpg", image, mask), Pieces.of(_png(pixels)))
        # a look that fails costs the item nothing: no flags, no strip, and the lane goes on
        await reviewer.offer(_prepared("broken.jpg", image, mask), Pieces.of(b"\x89PNG\r\n\x1a\nnot a picture"))
        await reviewer.close()
    flags = {item.key: [f.split(":")[0] for f in item.flags] async for item in store.items()}
    assert flags == {"good.jpg": [], "same.jpg": ["unchanged"], "broken.jpg": []}
    assert stats.flagged == 1
    strips = {key: (tmp_path / "thumbs" / review.thumb_name(key)).is_file() for key in flags}
    assert strips == {"good.jpg": True, "same.jpg": True, "broken.jpg": False}


@pytest.mark.asyncio
async def test_a_full_lane_holds_the_next_result_until_it_has_room(tmp_path: Path) -> None:
    """Memory stays bounded and no result goes without its look: the lane takes one answer at a time here."""
    image, mask, pixels, _ = _inputs("coffee")
    store, stats = MemoryStore(), RunStats()
    keys = ["a.jpg", "b.jpg", "c.jpg"]
    await _done(store, keys)
    reviewer = review.Reviewer(tmp_path / "thumbs", store, stats, lane_bytes=1)
    echo = Pieces.of(_png(pixels))
    await reviewer.offer(_prepared("a.jpg", image, mask), echo)  # an empty lane takes any one result
    with anyio.move_on_after(0.5) as waited:  # ... then it is full, and nothing takes from it yet
        await reviewer.offer(_prepared("b.jpg", image, mask), echo)
    assert waited.cancelled_caught
    async with anyio.create_task_group() as tg:
        tg.start_soon(reviewer.run)
        for key in keys[1:]:
            await reviewer.offer(_prepared(key, image, mask), echo)
        await reviewer.close()
    assert {item.key: bool(item.flags) async for item in store.items()} == dict.fromkeys(keys, True)

    off = review.Reviewer(None, store, stats)  # --no-report: nothing is looked at, nothing waits
    with anyio.fail_after(5):
        await off.offer(_prepared("a.jpg", image, mask), echo)
        async with anyio.create_task_group() as tg:
            tg.start_soon(off.run)
            await off.close()
    assert stats.flagged == 3


@pytest.mark.asyncio
async def test_the_lane_ends_whatever_a_look_or_the_store_throws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lane that died would leave the run waiting for it at its end: every failure is the look's alone."""
    from batch_inpaint.errors import ManifestError

    image, mask, pixels, _ = _inputs("coffee")
    store, stats = MemoryStore(), RunStats()
    await _done(store, ["odd.jpg", "ok.jpg"])
    real_look = review.look

    def picky(image: bytes, mask: bytes, answer: bytes, **kw: object) -> review.Look:
        if answer == b"odd":
            raise RuntimeError("an error no one foresaw (OpenCV's own, say)")
        return real_look(image, mask, answer)

    async def broken(key: str, flags: tuple[str, ...]) -> None:
        raise ManifestError("manifest.sqlite3: disk I/O error")

    monkeypatch.setattr(review, "look", picky)
    monkeypatch.setattr(store, "record_flags", broken)
    reviewer = review.Reviewer(tmp_path / "thumbs", store, stats)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reviewer.run)
            await reviewer.offer(_prepared("odd.jpg", image, mask), Pieces.of(b"odd"))
            await reviewer.offer(_prepared("ok.jpg", image, mask), Pieces.of(_png(pixels)))
            await reviewer.close()
    assert stats.flagged == 1  # the second look happened, though its flags could not be written


@pytest.mark.parametrize("name", PHOTOS)
def test_the_local_engine_hands_its_result_small_and_the_look_decodes_nothing(name: str) -> None:
    from batch_inpaint.engines import local

    image, mask, _, _ = _inputs(name)
    png, preview = local._inpaint(image, mask, "telea", 5, preview=True)
    width, height = Image.open(io.BytesIO(image)).size
    assert preview.shape == (*review.fit((width, height), review.LOOK)[::-1], 3)
    decoded, handed = review.look(image, mask, png), review.look(image, mask, None, preview=preview)
    assert decoded.flags == handed.flags == ()
    a = np.asarray(Image.open(io.BytesIO(decoded.strip)), dtype=float)
    b = np.asarray(Image.open(io.BytesIO(handed.strip)), dtype=float)
    assert np.abs(a - b).mean() < 2.0  # the same strip, but for resampling
