"""Learning the server's real limit (`limiter.pace`), on fake loop time against a simulated server.

The server is the emulator's own `Window`: a sliding window that counts rejected requests is the
hardest reading of "60 a minute", since every request sent into a full window keeps it full longer.
"""

from __future__ import annotations

import random

import anyio
import pytest

from tests.conftest import fake_time

from batch_inpaint.emulator.limits import Window
from batch_inpaint.limiter import MemoryBoard, Pace, ProcessLimiter, SharedLimiter


async def simulate(rate: float, limit: float, *, retry_after: float | None, kind: str = "sliding",
                   items: int | None = None, workers: int = 16, latency: float = 1.0, runs: int = 1,
                   stray: float = 0.0, seed: int = 1, shared: bool = False) -> tuple[float, int, int]:
    """Clean ``items`` pictures at ``--rate`` against a server allowing ``limit`` a minute: the rate
    achieved (requests let through a minute, first send to last answer), 429s, and requests.
    With ``runs`` > 1, that many runs of one key share the items, each pacing alone, or with
    ``shared`` through one schedule (`limiter.schedule`)."""
    server = Window(kind, limit)
    draw = random.Random(seed)
    items = items or int(limit * 5)
    todo = list(range(items))
    stamps: list[float] = []
    rejected = 0

    async def worker(limiter: SharedLimiter) -> None:
        nonlocal rejected
        while todo:
            todo.pop()
            while True:
                await limiter.acquire()
                sent_at = anyio.current_time()
                stamps.append(sent_at)
                await anyio.sleep(0.05)  # on the way
                admitted = draw.random() >= stray and server.admit(anyio.current_time())
                if not admitted:
                    await anyio.sleep(0.05)
                    rejected += 1
                    await limiter.rate_limited(retry_after, sent_at)
                    await anyio.sleep(retry_after or 0.0)  # as the sender does: this request waits
                    continue
                await anyio.sleep(latency * draw.uniform(0.5, 1.5))
                await limiter.succeeded()
                break

    start = anyio.current_time()
    board = MemoryBoard()
    async with anyio.create_task_group() as tg:
        for _ in range(runs):
            limiter = SharedLimiter(board, rate) if shared else ProcessLimiter(rate)
            for _ in range(workers):
                tg.start_soon(worker, limiter)
    achieved = items / (anyio.current_time() - start) * 60.0
    return achieved, rejected, len(stamps)


async def simulate_shared(rate: float, limit: float, *, runs: int, items: int | None = None) -> tuple[float, int, int]:
    return await simulate(rate, limit, retry_after=1.0, runs=runs, items=items, shared=True)


@fake_time
@pytest.mark.parametrize("retry_after", [1.0, None], ids=["retry-after-1s", "no-retry-after"])
@pytest.mark.parametrize("share", [0.5, 0.8])
async def test_a_limit_below_the_rate_is_learned_with_few_429s(share: float, retry_after: float | None) -> None:
    rate = 120.0  # 600 behaves the same, five times slower to simulate
    achieved, rejected, requests = await simulate(rate, rate * share, retry_after=retry_after)
    assert achieved >= 0.9 * rate * share, (achieved, rejected, requests)
    assert rejected < 0.05 * requests, (achieved, rejected, requests)


@fake_time
@pytest.mark.parametrize("share", [1.0, 1.5])
async def test_a_limit_at_or_above_the_rate_changes_nothing(share: float) -> None:
    achieved, rejected, _ = await simulate(60.0, 60.0 * share, retry_after=1.0, items=300)
    assert rejected == 0
    assert achieved >= 0.98 * 60.0 * 0.99  # the 1% headroom the grid keeps, and no less


@fake_time
@pytest.mark.parametrize("kind, share", [("fixed", 0.05), ("bucket", 0.2)])
async def test_other_windows_are_learned_too(kind: str, share: float) -> None:
    """A bucket lets a whole window's burst through at first, then answers 429 and 200 in turn: it
    teaches less, and draws more 429s (13% measured) than a window does."""
    achieved, rejected, requests = await simulate(120.0, 60.0, retry_after=None, kind=kind)
    assert achieved >= 0.85 * 60.0, (achieved, rejected, requests)
    assert rejected < share * requests, (achieved, rejected, requests)


@fake_time
async def test_two_runs_on_one_key_share_its_limit() -> None:
    """Each run halves its pace on its own 429s, and both climb back slowly: they settle near half each."""
    achieved, rejected, requests = await simulate(60.0, 60.0, retry_after=1.0, runs=2)
    assert achieved >= 0.85 * 60.0, (achieved, rejected, requests)
    assert rejected < 0.05 * requests, (achieved, rejected, requests)


def test_a_429_is_a_probe_and_a_second_one_lowers_the_pace_once() -> None:
    pace = Pace(600.0)
    for t in range(300):
        pace.sent(t * 0.1)  # 300 sends in the last 30 s: the server let about 300 a minute through
    probe = pace.rejected(30.0, sent_at=29.9, retry_after=1.0)
    assert not probe.lowered and probe.pause == 0.0  # maybe a stray: only that request waits
    second = pace.rejected(30.05, sent_at=29.95, retry_after=1.0)
    assert second.lowered and second.per_minute == 300.0  # 291 let through, but never below half at once
    # not Retry-After's 1 s: until all but 291 (the new pace less the margin) of our sends have left the
    # window, and a little more (the server stamps them later than we do)
    assert second.pause == pytest.approx(0.9 + 61.2 - 30.05)
    again = pace.rejected(30.1, sent_at=30.0, retry_after=1.0)  # sent before the decrease: nothing new
    assert not again.lowered and again.per_minute == 300.0


def test_429s_in_a_row_double_the_pause_up_to_a_window() -> None:
    pace = Pace(60.0)
    pauses = []
    for n in range(9):
        t = n * 70.0
        pace.sent(t)
        pauses.append(pace.rejected(t + 0.1, sent_at=t, retry_after=1.0).pause)
    assert pauses[0] == 0.0 and pauses[-1] == 60.0
    assert all(b >= min(60.0, 2 * a) for a, b in zip(pauses[1:], pauses[2:])), pauses


def test_successes_in_a_row_end_the_streak() -> None:
    pace = Pace(600.0)
    pace.sent(0.0)
    assert not pace.rejected(0.1, sent_at=0.0, retry_after=None).lowered
    pace.succeeded(0.2)  # one success between two 429s: a bucket running dry answers like that
    assert pace.rejected(0.3, sent_at=0.15, retry_after=None).lowered
    pace.sent(100.0)
    pace.succeeded(100.1)
    pace.succeeded(100.2)  # two in a row: calm again, the next 429 is a probe
    assert not pace.rejected(100.3, sent_at=100.25, retry_after=None).lowered


def test_the_pace_climbs_back_after_quiet_windows() -> None:
    pace = Pace(60.0)
    for t in range(30):
        pace.sent(float(t))
    pace.rejected(29.5, sent_at=29.0, retry_after=None)
    low = pace.rejected(30.0, sent_at=29.5, retry_after=None).per_minute
    assert low == 30.0
    assert pace.per_minute(89.0) == low  # a quiet window first
    assert low < pace.per_minute(150.0) < pace.per_minute(210.0) <= 60.0
    assert pace.per_minute(10_000.0) == 60.0


def test_a_send_said_late_twice_is_counted_once_at_its_latest_time() -> None:
    """Woken late and then slow to record: both say so; the log holds one send, at the later time."""
    pace = Pace(60)
    pace.sent(1.0)
    pace.sent_late(1.0, 1.5)
    pace.sent_late(1.5, 2.0)
    pace.sent_late(9.0, 3.0)  # a slot the log does not hold adds nothing
    assert pace.dump()["sent"] == [2.0]
