import anyio
import pytest

from batch_inpaint.clock import FakeClock
from batch_inpaint.pacing import Pacer


def busiest_window(times: list[float], width: float = 60.0) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.mark.asyncio
async def test_sends_are_evenly_spaced_from_the_first() -> None:
    clock = FakeClock()
    pacer = Pacer(60, clock=clock, headroom=0.0)
    times = []
    for _ in range(5):
        await pacer.acquire()
        times.append(clock.now())
    assert [round(b - a, 6) for a, b in zip(times, times[1:])] == [1.0] * 4
    assert times[0] == 1000.0  # no waiting for the first request


@pytest.mark.asyncio
async def test_concurrent_callers_never_exceed_the_limit_in_any_window() -> None:
    clock = FakeClock()
    pacer = Pacer(60, clock=clock)
    times: list[float] = []

    async def sender() -> None:
        for _ in range(30):
            await pacer.acquire()
            times.append(clock.now())

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(sender)
    assert len(times) == 240
    assert busiest_window(times) <= 60
    gaps = [b - a for a, b in zip(sorted(times), sorted(times)[1:])]
    assert min(gaps) >= 1.0  # a burst of 1: never two at once
    elapsed = max(times) - min(times)
    assert 239 / elapsed * 60 >= 0.98 * 60  # and the whole rate is used


@pytest.mark.asyncio
async def test_a_pause_holds_every_caller() -> None:
    clock = FakeClock()
    pacer = Pacer(60, clock=clock, headroom=0.0)
    await pacer.acquire()
    pacer.pause(10.0)
    await pacer.acquire()
    assert clock.now() == pytest.approx(1010.0)
    await pacer.acquire()
    assert clock.now() == pytest.approx(1011.0)


@pytest.mark.asyncio
async def test_a_pause_set_while_callers_wait_is_respected() -> None:
    clock = FakeClock()
    pacer = Pacer(60, clock=clock, headroom=0.0)
    times: list[float] = []

    async def sender() -> None:
        await pacer.acquire()
        times.append(clock.now())

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(sender)
        await anyio.lowlevel.checkpoint()
        pacer.pause(30.0)
    # nobody had been released yet: all go after the pause, still evenly spaced
    assert sorted(times) == pytest.approx([1030.0, 1031.0, 1032.0])


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Pacer(0)


@pytest.mark.asyncio
async def test_closing_releases_waiting_callers_at_once() -> None:
    pacer = Pacer(1)  # real clock, one a minute: the second caller would wait 60 s
    await pacer.acquire()
    with anyio.fail_after(10):  # far less than the 60 s the slot is away
        async with anyio.create_task_group() as tg:
            tg.start_soon(pacer.acquire)
            await anyio.sleep(0.05)
            pacer.close()
    assert pacer.closed
