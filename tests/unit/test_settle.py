"""A file counts once it has stopped changing for the settle time, by its mtime or by what earlier
walks saw (for a file server whose clock runs behind or ahead)."""

from __future__ import annotations

from pathlib import Path

from batch_inpaint.pairing import FileSig, Pair
from batch_inpaint.settle import Settle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pair(image_sig: FileSig, mask_sig: FileSig | None = None, mask: str | None = "m.png") -> Pair:
    return Pair("a.jpg", "/in/a.jpg", mask, "a", image_sig, mask_sig)


def test_a_file_growing_at_every_look_is_never_ready_and_is_once_it_stops() -> None:
    clock, wall = Clock(), Clock()
    settle = Settle(5, clock=clock, wall=wall)
    mtime = int(wall.now * 1e9)
    old_mask = FileSig(10, int((wall.now - 3600) * 1e9))
    for size in (100, 200, 300, 400):  # a copy in chunks, a look every 2 s, mtime moving with it
        assert not settle.ready(pair(FileSig(size, mtime), old_mask))
        assert settle.next_check() == 5.0
        clock.now += 2
        wall.now += 2
        mtime = int(wall.now * 1e9)
    done = FileSig(400, int((wall.now - 2) * 1e9))
    assert not settle.ready(pair(done, old_mask))
    clock.now += 3
    wall.now += 3  # 5 s since the last write: whole, by its mtime
    assert settle.ready(pair(done, old_mask))
    assert settle.next_check() is None


def test_a_file_whose_mtime_is_in_the_future_settles_by_what_walks_saw() -> None:
    clock, wall = Clock(), Clock()
    settle = Settle(5, clock=clock, wall=wall)
    ahead = FileSig(100, int((wall.now + 600) * 1e9))  # a file server ten minutes ahead
    mask = FileSig(10, 0)
    assert not settle.ready(pair(ahead, mask))
    clock.now += 4.9
    assert not settle.ready(pair(ahead, mask))
    assert round(settle.next_check() or 0, 6) == 0.1
    clock.now += 0.1
    assert settle.ready(pair(ahead, mask))


def test_a_pair_waits_for_its_mask_too_and_an_old_pair_is_ready_at_once(tmp_path: Path) -> None:
    clock, wall = Clock(), Clock()
    settle = Settle(5, clock=clock, wall=wall)
    old = FileSig(100, int((wall.now - 60) * 1e9))
    fresh = FileSig(10, int(wall.now * 1e9))
    assert settle.ready(pair(old, old))
    assert not settle.ready(pair(old, fresh))
    assert settle.ready(pair(old, None, mask=None))  # no mask: nothing else to wait for
    assert Settle(0, clock=clock, wall=wall).ready(pair(fresh, fresh))


def test_a_pair_without_signatures_is_looked_at_on_the_disk(tmp_path: Path) -> None:
    image = tmp_path / "a.jpg"
    image.write_bytes(b"x" * 10)
    settle = Settle(5)
    assert not settle.ready(Pair("a.jpg", str(image), None, "a"))  # just written
    assert settle.ready(Pair("gone.jpg", str(tmp_path / "gone.jpg"), None, "gone"))  # preflight says it is missing


def test_a_file_that_went_away_before_it_settled_does_not_keep_waking_the_watch() -> None:
    clock, wall = Clock(), Clock()
    settle = Settle(5, clock=clock, wall=wall)
    settle.new_pass()
    assert not settle.ready(pair(FileSig(100, int(wall.now * 1e9)), FileSig(10, 0)))
    assert settle.next_check() == 5.0
    clock.now += 10
    settle.new_pass()  # the next walk no longer finds it (deleted, or its pair is no longer due)
    assert settle.next_check() is None
