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
