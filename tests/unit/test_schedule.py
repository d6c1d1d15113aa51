"""One key's schedule shared by several runs (`limiter.schedule`, `limiter.boards`), on fake loop time.

Each "run" here is a `SharedLimiter` with a `FileBoard` of its own on one file, as separate processes
have; the board's clock is the event loop's, so the whole exchange runs on fake time.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import anyio
import pytest

from tests.conftest import fake_time
from tests.unit.test_pace import simulate_shared

from batch_inpaint.emulator.requestlog import busiest_window
from batch_inpaint.limiter import FileBoard, Member, Schedule, SharedLimiter, key_id

KEY = key_id("sk-test", "http://127.0.0.1:1/cleanup/v1")


def run(folder: Path, rate: float = 60.0, *, out: str = "", headroom: float = 0.0) -> SharedLimiter:
    return SharedLimiter(FileBoard(folder, KEY, clock=anyio.current_time), rate, headroom=headroom, out=out)


async def stamps(limiter: SharedLimiter, count: int, into: list[float]) -> None:
    for _ in range(count):
        await limiter.acquire()
        into.append(anyio.current_time())


@fake_time
async def test_runs_of_one_key_share_one_evenly_spaced_grid(tmp_path: Path) -> None:
    runs = [run(tmp_path, out=f"/out{i}") for i in range(3)]
    times: list[float] = []
    async with anyio.create_task_group() as tg:
        for limiter in runs:
            tg.start_soon(stamps, limiter, 40, times)
    ordered = sorted(times)
    assert len(ordered) == 120
    assert busiest_window(ordered) <= 60
    assert min(b - a for a, b in zip(ordered, ordered[1:])) == pytest.approx(1.0)  # one grid, not three
    assert 119 / (ordered[-1] - ordered[0]) * 60 == pytest.approx(60.0)
    assert all("sharing this key's rate limit with 2 other runs" in " ".join(r.news()) for r in runs)
    for limiter in runs:
        await limiter.aclose()
    assert Schedule(json.loads((tmp_path / f"{KEY}.json").read_text())).members == {}  # each left


@fake_time
async def test_a_429_seen_by_one_run_pauses_every_run(tmp_path: Path) -> None:
    first, second = run(tmp_path), run(tmp_path)
    await first.acquire()
    await second.acquire()
    start = anyio.current_time()
    await first.pause(20.0)  # what a second 429 in a row does (`Pace`), seen by the first run only
    await second.acquire()
    assert anyio.current_time() - start == pytest.approx(20.0)


@fake_time
async def test_a_pause_begun_while_another_run_waits_holds_it(tmp_path: Path) -> None:
    first, second = run(tmp_path), run(tmp_path)
    await first.acquire()
    start = anyio.current_time()
    got: list[float] = []

    async def wait_second() -> None:
        await second.acquire()  # its slot is 1 s away
        got.append(anyio.current_time() - start)

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_second)
        await anyio.sleep(0.5)
        slowdown = await first.rate_limited(None, start)
        slowdown = await first.rate_limited(None, start + 0.1)  # the second in a row pauses everyone
        assert slowdown.pause > 0
    assert got[0] >= 0.5 + slowdown.pause - 1e-6


@fake_time
async def test_the_smallest_rate_wins_while_runs_overlap_and_is_said_once(tmp_path: Path) -> None:
    fast, slow = run(tmp_path, 60.0, out="/fast"), run(tmp_path, 20.0, out="/slow")
    await slow.start()
    times: list[float] = []
    await stamps(fast, 4, times)
    assert [round(b - a, 6) for a, b in zip(times, times[1:])] == [3.0] * 3  # 20 a minute
    assert fast.per_minute == 20.0
    news = fast.news()
    assert sum("asks for --rate 20" in text for text in news) == 1 and "writing /slow" in " ".join(news)
    await stamps(fast, 2, times)
    assert not any("asks for" in text for text in fast.news())  # said once
    assert slow.news() == [] or not any("asks for" in t for t in slow.news())
    await slow.aclose()  # the slow run ends: its rate no longer holds
    await stamps(fast, 3, times)
    assert [round(b - a, 6) for a, b in zip(times[-3:], times[-2:])] == [1.0, 1.0]


@fake_time
async def test_a_dead_run_blocks_no_one(tmp_path: Path) -> None:
    """A run killed with kill -9 left its member entry, a lower rate and a slot claimed one interval
    ahead: the next run drops it at once and waits no more than that one slot."""
    now = anyio.current_time()
    dead = Member("dead", pid=2**22 + 12345, host=__import__("socket").gethostname(), out="/gone", rate=1.0,
                  window=60.0, token="1", seen=now)
    schedule = Schedule()
    schedule.join(dead, now)
    schedule.next_slot = now + 1.0
    (tmp_path / f"{KEY}.json").write_text(json.dumps(schedule.dump()))
    alive = run(tmp_path, 60.0)
    times: list[float] = []
    await stamps(alive, 3, times)
    assert times[0] - now == pytest.approx(1.0)  # the dead run's slot passes, and that is all
    assert [round(b - a, 6) for a, b in zip(times, times[1:])] == [1.0, 1.0]  # its --rate 1 is gone with it
    assert not any("asks for" in text for text in alive.news())


@fake_time
async def test_a_clock_that_went_back_does_not_block_the_schedule(tmp_path: Path) -> None:
    now = anyio.current_time()
    schedule = Schedule()
    schedule.next_slot = schedule.paused_until = now + 3600.0  # set before the clock was put back an hour
    (tmp_path / f"{KEY}.json").write_text(json.dumps(schedule.dump()))
    limiter = run(tmp_path)
    await limiter.acquire()
    assert anyio.current_time() == pytest.approx(now)


@fake_time
async def test_a_board_failing_mid_run_leaves_the_run_pacing_alone_at_its_share(tmp_path: Path) -> None:
    folder = tmp_path / "limits"
    first, second = run(folder, 60.0), run(folder, 60.0)
    await first.acquire()
    await second.acquire()
    await first.acquire()  # and the first run has seen the second
    for path in folder.iterdir():  # the folder goes away under the runs (a full or unmounted disk)
        path.unlink()
    folder.rmdir()
    times: list[float] = []
    await stamps(first, 3, times)
    assert [round(b - a, 6) for a, b in zip(times, times[1:])] == [2.0, 2.0]  # half of 60: one of two runs
    assert sum("can no longer be shared" in text for text in first.news()) == 1


@fake_time
async def test_a_cancelled_claim_is_given_back_to_the_other_runs(tmp_path: Path) -> None:
    first, second = run(tmp_path), run(tmp_path)
    start = anyio.current_time()
    await first.acquire()
    with anyio.move_on_after(0.5):
        await first.acquire()  # would send at 1.0; gives up at 0.5
    await second.acquire()
    assert anyio.current_time() - start == pytest.approx(1.0)


@fake_time
async def test_shared_pacing_learns_a_lower_limit_once_for_all_runs() -> None:
    """Three runs of one key at --rate 120 against a server allowing 60: sharing one schedule they
    learn it together (few 429s), where runs pacing alone each learn it from their own 429s."""
    achieved, rejected, requests = await simulate_shared(120.0, 60.0, runs=3)
    assert achieved >= 0.85 * 60.0, (achieved, rejected, requests)
    assert rejected < 0.05 * requests, (achieved, rejected, requests)


@fake_time
async def test_at_the_limit_shared_runs_draw_no_429_where_lone_ones_storm() -> None:
    shared = await simulate_shared(60.0, 60.0, runs=3, items=240)
    assert shared[1] == 0, shared
    from tests.unit.test_pace import simulate

    alone = await simulate(60.0, 60.0, retry_after=1.0, runs=3, items=240)
    assert alone[1] > 10 * max(1, shared[1]), alone  # the storm this sharing removes


def test_the_key_id_names_key_and_endpoint_and_never_holds_the_key() -> None:
    a = key_id("sk-secret-1", "https://clipdrop-api.co/cleanup/v1")
    assert "sk-secret-1" not in a and len(a) == 32
    assert a == key_id("sk-secret-1", "https://clipdrop-api.co/cleanup/v1/")
    assert a != key_id("sk-secret-2", "https://clipdrop-api.co/cleanup/v1")
    assert a != key_id("sk-secret-1", "http://127.0.0.1:8765/cleanup/v1")


def test_the_state_round_trips_through_json() -> None:
    schedule = Schedule()
    schedule.join(Member("r1", 1, "h", "/o", 30.0, 60.0, "t"), 5.0)
    claim = schedule.claim("r1", 5.0, 0.0)
    again = Schedule(json.loads(json.dumps(schedule.dump())))
    assert again.next_slot == claim.slot + claim.interval == 7.0
    assert again.paused_until == -math.inf and again.members == schedule.members
    assert again.pace.dump() == schedule.pace.dump()
