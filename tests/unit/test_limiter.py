"""The limiter contract, on fake loop time (looptime): every pacing limiter passes the same suite.

A limiter that paces at ``per_minute`` spaces sends evenly from the first, never lets more than
``per_minute`` into any 60 s, uses the whole rate, holds every caller during a pause, and gives a slot
up when its waiter is cancelled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import anyio
import pytest

from tests.conftest import fake_time

from batch_inpaint.emulator.requestlog import busiest_window
from batch_inpaint.limiter import FileBoard, Limiter, ProcessLimiter, SharedLimiter, Unlimited, key_id
from batch_inpaint.limiter.boards import MemoryBoard
from batch_inpaint.limiter.schedule import Schedule

PacingFactory = Callable[..., Limiter]


def host(folder: Path) -> PacingFactory:
    """A run sharing its key's schedule through a file, on the loop's (fake) clock."""

    def make(per_minute: float, *, headroom: float | None = None) -> Limiter:
        board = FileBoard(folder, key_id("sk-test", "http://127.0.0.1/cleanup/v1"), clock=anyio.current_time)
        return SharedLimiter(board, per_minute, headroom=headroom)

    return make


@pytest.fixture(params=["process", "host"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> PacingFactory:
    return ProcessLimiter if request.param == "process" else host(tmp_path)


async def stamps(limiter: Limiter, count: int) -> list[float]:
    times = []
    for _ in range(count):
        await limiter.acquire()
        times.append(anyio.current_time())
    return times


@fake_time
async def test_sends_are_evenly_spaced_from_the_first(make: PacingFactory) -> None:
    start = anyio.current_time()
    times = await stamps(make(60, headroom=0.0), 5)
    assert [round(b - a, 6) for a, b in zip(times, times[1:])] == [1.0] * 4
    assert times[0] == start  # no waiting for the first request


@fake_time
async def test_concurrent_callers_never_exceed_the_limit_in_any_window(make: PacingFactory) -> None:
    limiter = make(60)
    times: list[float] = []

    async def sender() -> None:
        times.extend(await stamps(limiter, 30))

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(sender)
    ordered = sorted(times)
    assert len(times) == 240
    assert busiest_window(times) <= 60
    assert min(b - a for a, b in zip(ordered, ordered[1:])) >= 1.0  # a burst of 1: never two at once
    assert 239 / (ordered[-1] - ordered[0]) * 60 >= 0.98 * 60  # and the whole rate is used


@fake_time
async def test_a_pause_holds_every_caller(make: PacingFactory) -> None:
    limiter = make(60, headroom=0.0)
    start = anyio.current_time()
    await limiter.acquire()
    await limiter.pause(10.0)
    await limiter.acquire()
    assert anyio.current_time() - start == pytest.approx(10.0)
    await limiter.acquire()
    assert anyio.current_time() - start == pytest.approx(11.0)


@fake_time
async def test_a_pause_set_while_callers_wait_is_respected(make: PacingFactory) -> None:
    limiter = make(60, headroom=0.0)
    start = anyio.current_time()
    await limiter.acquire()  # the next callers have to wait for their slots
    times: list[float] = []

    async def sender() -> None:
        await limiter.acquire()
        times.append(anyio.current_time() - start)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(sender)
        await anyio.sleep(0.5)
        await limiter.pause(30.0)
    # nobody waiting had been released yet: all go after the pause, still evenly spaced
    assert sorted(times) == pytest.approx([30.5, 31.5, 32.5])


@fake_time
async def test_a_shorter_pause_does_not_cut_a_longer_one(make: PacingFactory) -> None:
    limiter = make(60, headroom=0.0)
    start = anyio.current_time()
    await limiter.pause(20.0)
    await limiter.pause(5.0)
    await limiter.acquire()
    assert anyio.current_time() - start == pytest.approx(20.0)


@fake_time
async def test_a_cancelled_waiter_gives_its_slot_up(make: PacingFactory) -> None:
    limiter = make(60, headroom=0.0)
    start = anyio.current_time()
    await limiter.acquire()
    with anyio.move_on_after(0.5):
        await limiter.acquire()  # would get the slot at 1.0; gives up at 0.5
    await limiter.acquire()
    assert anyio.current_time() - start == pytest.approx(1.0)  # the slot went to the next caller


class SlowBoard(MemoryBoard):
    """A board whose reads take ``delays`` seconds in turn (a database under load), then ``after``."""

    def __init__(self, delays: list[float], after: float = 0.0) -> None:
        super().__init__()
        self.delays, self.after = delays, after

    async def read(self) -> Schedule:
        await anyio.sleep(self.delays.pop(0) if self.delays else self.after)
        return self.schedule


@fake_time
async def test_the_pause_is_read_ahead_of_the_slot_so_sends_stay_on_the_grid() -> None:
    limiter = SharedLimiter(SlowBoard([], after=0.2), 60)  # a 1.01 s grid; every read takes 0.2 s
    times = await stamps(limiter, 5)
    offsets = [round(t - times[0], 6) for t in times]
    assert offsets[1] == pytest.approx(1.01 + 0.2)  # the first read is late: nothing known of it yet
    assert offsets[2:] == pytest.approx([2.02, 3.03, 4.04])  # then read ahead: sent on the slot
    assert limiter.late_sends == 0  # 0.2 s late is within what the headroom leaves for it


@fake_time
async def test_a_sender_woken_late_holds_back_the_send_a_window_later() -> None:
    """Woken 0.5 s late, its request and the next ones on the grid would put 7 sends into 6 s at 60
    a minute; the send a window after the late one waits as long instead."""
    limiter = SharedLimiter(SlowBoard([0.5]), 60, window=6.0)  # 6 a window; a grid of 1.067 s
    assert limiter.tolerance == pytest.approx(0.2)
    times = await stamps(limiter, 10)
    offsets = [round(t - times[0], 3) for t in times]
    assert offsets[1] == pytest.approx(1.567, abs=1e-3) and limiter.late_sends == 1
    assert offsets[2:7] == pytest.approx([2.133, 3.2, 4.267, 5.333, 6.4], abs=1e-3)  # the grid goes on
    assert offsets[7] == pytest.approx(1.567 + 6.0, abs=1e-3)  # a window after the late send, not 7.467
    assert busiest_window(times, 6.0) == 6


@pytest.mark.parametrize("rate", [0, -1, float("inf"), float("nan")])
def test_rate_must_be_a_positive_finite_number(make: PacingFactory, rate: float) -> None:
    with pytest.raises(ValueError):
        make(rate)


@fake_time
async def test_unlimited_never_waits() -> None:
    limiter = Unlimited()
    start = anyio.current_time()
    assert await limiter.rate_limited(60.0, sent_at=start) is None
    assert await stamps(limiter, 100) == [start] * 100
