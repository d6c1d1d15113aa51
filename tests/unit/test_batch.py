"""The batch with the shipped FakeEngine and the in-memory store, on fake loop time: retries, pauses, stops
and budgets. The SQLite store has its own contract suite (test_store.py) and the end-to-end tests."""

from __future__ import annotations

import errno
import os
from pathlib import Path
import anyio
import pytest

from tests.conftest import fake_time

from batch_inpaint.batch import Batch
from batch_inpaint.engines.base import InpaintRequest, InpaintResult
from batch_inpaint.emulator.requestlog import busiest_window
from batch_inpaint.engines.fake import FakeEngine
from batch_inpaint.errors import (
    CreditsExhausted,
    KeyRejected,
    RateLimited,
    Rejected,
    ServerError,
    TransportError,
)
from batch_inpaint.limiter import Limiter, ProcessLimiter, Slot, Unlimited
from batch_inpaint.retrying import RetryPolicy
from batch_inpaint.settings import Settings
from batch_inpaint.store import Fingerprint, LeaseLost, MemoryStore
from batch_inpaint.synthetic import write_tree



@pytest.fixture
def tree(tmp_path: Path) -> Path:
    write_tree(tmp_path / "in", [f"p{i}" for i in range(6)], size=(64, 48))
    return tmp_path


async def run(tree: Path, engine: FakeEngine, *, limiter: Limiter | None = None, outage_seconds: float = 60.0,
              store: MemoryStore | None = None, **changes: object) -> Batch:
    settings = Settings(input_dir=tree / "in" / "photos", masks_dir=tree / "in" / "masks", out_dir=tree / "out",
                        rate=60, concurrency=changes.pop("concurrency", 2), **changes)  # type: ignore[arg-type]
    STORES[tree] = store = store or MemoryStore()
    batch = Batch(settings, engine=engine, store=store, limiter=limiter or ProcessLimiter(60),
                  policy=RetryPolicy(max_attempts=4, max_seconds=600, outage_seconds=outage_seconds))
    await batch.run()
    return batch


STORES: dict[Path, MemoryStore] = {}


def statuses(tree: Path) -> dict[str, str]:
    return {key: row["status"] for key, row in STORES[tree].rows.items()}


@fake_time
async def test_server_errors_are_retried_with_backoff(tree: Path) -> None:
    engine = FakeEngine([ServerError(503, "busy"), ServerError(500, "oops")])
    batch = await run(tree, engine)
    assert batch.exit_code == 0
    assert batch.stats.done == 6 and batch.stats.retries == 2
    assert len(engine.calls) == 8
    assert set(statuses(tree).values()) == {"done"}
    assert len(list((tree / "out").glob("*.png"))) == 6


class RecordingLimiter(ProcessLimiter):
    """Notes when each send slot is released and whether a 429 had come back before it."""

    def __init__(self, limited: list[float]) -> None:
        super().__init__(60)
        self.limited = limited
        self.releases: list[tuple[float, bool]] = []

    async def acquire(self) -> Slot:
        slot = await super().acquire()
        self.releases.append((anyio.current_time(), bool(self.limited)))
        return slot


@fake_time
async def test_429s_in_a_row_pause_every_worker(tree: Path) -> None:
    limited: list[float] = []

    def on_call(request: InpaintRequest) -> None:
        if len(engine.calls) == 3:
            limited.append(anyio.current_time())

    engine = FakeEngine([None, RateLimited(None), RateLimited(None)], on_call=on_call)
    limiter = RecordingLimiter(limited)
    batch = await run(tree, engine, concurrency=4, limiter=limiter)
    assert batch.stats.rate_limited == 2 and batch.stats.done == 6
    after_429 = [t for t, seen in limiter.releases if seen]
    assert after_429  # at least the retry of the limited item went after the second 429
    # the second 429 in a row lowered the pace (three sends in the window: halved, as far as it goes
    # at once) and no worker was let through for one interval at the new pace
    assert limiter.per_minute == 30.0
    assert min(after_429) >= limited[0] + 2.0


class SlowToRecord(MemoryStore):
    """The second request takes 2 s to record before it goes (a stalled disk, a busy host)."""

    async def mark_in_flight(self, key: str, run_id: int, fingerprint: Fingerprint | None) -> bool:
        self.marks = getattr(self, "marks", 0) + 1
        if self.marks == 2:
            await anyio.sleep(2.0)
        return await super().mark_in_flight(key, run_id, fingerprint)


@fake_time
async def test_a_request_that_leaves_after_its_slot_holds_back_the_send_a_window_later(tmp_path: Path) -> None:
    """Sent 2 s after its slot, it goes out close to the next ones: the sends a window later wait as
    long, so the server's window never holds more than the limit."""
    write_tree(tmp_path / "in", [f"img{i}" for i in range(10)], size=(32, 24))
    sent: list[float] = []
    engine = FakeEngine([], on_call=lambda request: sent.append(anyio.current_time()))
    limiter = ProcessLimiter(60, window=6.0)  # 6 a window
    batch = await run(tmp_path, engine, store=SlowToRecord(), limiter=limiter)
    assert batch.stats.done == 10 and limiter.late_sends == 1
    assert busiest_window(sorted(sent), 6.0) == 6


@fake_time
async def test_a_single_429_holds_back_only_its_own_request(tree: Path) -> None:
    """A stray 429 among successes says little about the limit: that request waits its Retry-After,
    the others go on at the pace they had."""
    limited: list[float] = []
    engine = FakeEngine([RateLimited(30.0)], on_call=lambda r: limited.append(anyio.current_time()) if not limited else None)
    limiter = RecordingLimiter(limited)
    batch = await run(tree, engine, concurrency=3, limiter=limiter)
    assert batch.stats.done == 6 and limiter.per_minute == 60
    assert limiter.paused_until <= limited[0]  # nobody was held back
    # (when the others went is not asserted: fake time jumps while preflight runs in worker threads)
    assert anyio.current_time() >= limited[0] + 30.0  # which waited its Retry-After


@fake_time
async def test_a_rejected_key_stops_the_run_without_more_requests(tree: Path) -> None:
    engine = FakeEngine([KeyRejected(403, "invalid api key")])
    batch = await run(tree, engine, concurrency=1)
    assert batch.exit_code == 3
    assert len(engine.calls) == 1
    assert "done" not in statuses(tree).values()
    assert "in_flight" not in statuses(tree).values()


@fake_time
async def test_out_of_credits_stops_with_exit_4(tree: Path) -> None:
    engine = FakeEngine([None, None, CreditsExhausted("Not enough credits")])
    batch = await run(tree, engine, concurrency=1)
    assert batch.exit_code == 4
    assert len(engine.calls) == 3 and batch.stats.done == 2


@fake_time
async def test_a_rejected_item_fails_alone(tree: Path) -> None:
    engine = FakeEngine([Rejected(400, "mask resolution differs")])
    batch = await run(tree, engine, concurrency=1)
    assert batch.exit_code == 1
    assert batch.stats.done == 5 and batch.stats.failed == 1
    key, status, reason = batch.stats.problems[0]
    assert status == "failed" and "mask resolution differs" in reason and key.endswith(".jpg")


@fake_time
async def test_retries_are_bounded(tree: Path) -> None:
    engine = FakeEngine([ServerError(503, "down")] * 4)
    batch = await run(tree, engine, concurrency=1)
    assert batch.stats.failed == 1 and "gave up" in batch.stats.problems[0][2]
    assert len(engine.calls) == 4 + 5


@fake_time
async def test_lost_answers_count_as_possibly_charged(tree: Path) -> None:
    engine = FakeEngine([TransportError("reset"), TransportError("reset")])
    batch = await run(tree, engine, concurrency=1)
    assert batch.stats.possibly_charged == 2 and batch.stats.done == 6


@fake_time
async def test_max_credits_budget_counts_requests_in_flight(tree: Path) -> None:
    engine = FakeEngine()
    batch = await run(tree, engine, concurrency=4, max_credits=3)
    assert batch.exit_code == 4
    assert len(engine.calls) == 3
    assert batch.stats.credits_used == 3


@fake_time
async def test_an_unpaid_engine_with_no_limiter_spends_nothing_and_never_waits(tree: Path) -> None:
    engine = FakeEngine(paid=False)
    started = anyio.current_time()
    batch = await run(tree, engine, limiter=Unlimited(), max_credits=0)
    assert batch.stats.done == 6 and batch.stats.credits_used == 0  # a budget of 0 stops nothing that is free
    assert anyio.current_time() == started  # no pacing, no sleep of any kind


@fake_time
async def test_a_paid_engine_is_paced_at_the_rate(tree: Path) -> None:
    started = anyio.current_time()
    batch = await run(tree, FakeEngine(), concurrency=6)
    assert batch.stats.done == 6
    assert anyio.current_time() - started >= 5 * 60 / 60  # six sends, evenly spaced at 60 a minute


@fake_time
@pytest.mark.parametrize("code, stops", [(errno.ENOSPC, True), (errno.EROFS, True), (errno.ENAMETOOLONG, False)])
async def test_a_failed_write_fails_the_item_and_a_full_disk_stops_the_run(
    tree: Path, monkeypatch: pytest.MonkeyPatch, code: int, stops: bool
) -> None:
    real_replace = os.replace

    def failing_replace(src: str, dst: str) -> None:
        if str(dst).endswith("p2.png"):
            raise OSError(code, os.strerror(code))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    engine = FakeEngine()
    batch = await run(tree, engine, concurrency=1)
    assert not (tree / "out" / "p2.png").exists()
    assert list((tree / "out").glob("*.part")) == [] and list((tree / "out").glob(".*.part")) == []
    assert statuses(tree)["p2.jpg"] == "failed"
    assert os.strerror(code) in batch.stats.problems[0][2]
    if stops:
        assert batch.exit_code == 6 and len(engine.calls) == batch.stats.done + 1  # nothing sent after it
    else:
        assert batch.exit_code == 1 and batch.stats.done == 5


@fake_time
@pytest.mark.parametrize("copy", [False, True])
async def test_an_empty_mask_sends_nothing_and_can_copy_the_original(tree: Path, copy: bool) -> None:
    from PIL import Image

    Image.new("L", (64, 48), 0).save(tree / "in" / "masks" / "p1.png")
    engine = FakeEngine()
    batch = await run(tree, engine, copy_empty=copy)
    assert batch.exit_code == 0 and batch.stats.empty_mask == 1 and len(engine.calls) == 5
    assert statuses(tree)["p1.jpg"] == "empty_mask"
    assert (tree / "out" / "p1.png").exists() is copy
    if copy:
        with Image.open(tree / "out" / "p1.png") as out, Image.open(tree / "in" / "photos" / "p1.jpg") as original:
            assert out.size == original.size


@fake_time
async def test_429s_do_not_use_up_attempts(tree: Path) -> None:
    engine = FakeEngine([RateLimited(0.5)] * 6 + [ServerError(503, "x")] * 3)
    # 4 attempts allowed: 6 429s and 3 503s still succeed. Six 429s in a row slow the pace to a crawl,
    # so the 503s come minutes apart: too long for the outage breaker's default minute.
    batch = await run(tree, engine, concurrency=1, outage_seconds=600)
    assert batch.exit_code == 0 and batch.stats.rate_limited == 6 and batch.stats.done == 6, batch.control.stop_reason


def test_the_batch_loads_no_numpy_or_opencv() -> None:
    """A re-run that finds nothing to do must not pay for loading NumPy and OpenCV: a fresh
    interpreter imports the pipeline and the engines' interface and finds neither loaded."""
    import subprocess
    import sys

    code = ("import sys, batch_inpaint.batch, batch_inpaint.engines, batch_inpaint.runner; "
            "print(sorted(m for m in ('numpy', 'cv2') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


@fake_time
async def test_retry_state_does_not_pile_up_between_full_collections(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each item's tenacity retrier is cyclic garbage once the item is done; the batch runs a full
    collection every COLLECT_EVERY items so a long run's memory does not grow with its length."""
    import gc

    from tenacity import AsyncRetrying

    from batch_inpaint import batch as batch_module

    monkeypatch.setattr(batch_module, "COLLECT_EVERY", 2)
    gc.collect()
    gc.disable()
    try:
        batch = await run(tree, FakeEngine([ServerError(503, "busy")]), concurrency=1)
        left = sum(isinstance(o, AsyncRetrying) for o in gc.get_objects())
    finally:
        gc.enable()
    assert batch.stats.done == 6
    assert left < 2


class LateFirstAnswers(FakeEngine):
    """Answers arrive out of order: the first request's answer (the most credits left) comes last,
    after every other answer is in."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count
        self.others_in = anyio.Event()

    async def inpaint(self, request: InpaintRequest) -> InpaintResult:
        result = await super().inpaint(request)
        if len(self.calls) == 1:
            await self.others_in.wait()
            await anyio.sleep(1.0)  # and the others have been taken in
        elif len(self.calls) == self.count:
            self.others_in.set()
        return result


@fake_time
async def test_credits_left_is_the_lowest_count_the_api_reported(tree: Path) -> None:
    engine = LateFirstAnswers(6)
    batch = await run(tree, engine, concurrency=6)
    assert batch.stats.done == 6
    assert batch.stats.remaining_credits == engine.credits == 994  # not 999, from the answer that came last


class TakenOnElsewhere(MemoryStore):
    """Another worker of the job took ``p2`` on while this one was held up before sending it."""

    async def mark_in_flight(self, key: str, run_id: int, fingerprint: Fingerprint | None) -> bool:
        if key.startswith("p2."):
            raise LeaseLost(key)
        return await super().mark_in_flight(key, run_id, fingerprint)


@fake_time
async def test_an_item_taken_on_by_another_worker_before_its_request_is_not_sent(tree: Path) -> None:
    sent: list[str] = []
    engine = FakeEngine([], on_call=lambda request: sent.append(request.name))
    batch = await run(tree, engine, store=TakenOnElsewhere(), max_credits=5)  # none to spare: its reservation came back
    assert len(sent) == 5 and not any(key.startswith("p2.") for key in sent)  # no credit paid for it
    assert (batch.stats.done, batch.stats.lease_lost, batch.stats.failed) == (5, 1, 0)
    assert [status for key, status in statuses(tree).items() if key.startswith("p2.")] == ["pending"]
