"""The batch: walk -> manifest check -> preflight -> paced workers -> atomic output -> manifest.

Pairs stream through bounded queues, so memory stays flat for any folder size and the first request
goes out while the walk is still running. Only ``Batch.run`` is public; the CLI is a thin layer on it.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import os
import sqlite3
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream as ObjectReceiveStream
from anyio.streams.memory import MemoryObjectSendStream as ObjectSendStream
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from . import compose
from .clock import Clock, MonotonicClock
from .engines.base import Engine, InpaintRequest, InpaintResult
from .errors import (
    BatchInpaintError,
    BrokenResponse,
    CreditsExhausted,
    DiskUnwritable,
    InvalidInput,
    ManifestError,
    ItemError,
    OutputError,
    RateLimited,
    Retryable,
    RunStopped,
    TransportError,
)
from .inflight import ByteBudget, footprint
from .manifest import ItemRow, Manifest
from .output import DISK_ERRNOS, output_path, write_atomic
from .pairing import OrphanMask, Pair, pairs_for
from .preflight import Prepared, PreflightOptions, digest, prepare
from .resume import Decision, OutputIndex, decide
from .retrying import RetryPolicy, is_retryable
from .settings import Settings
from .stats import RunStats

T = TypeVar("T")
WALK_CHUNK = 500
#: Items sent between two full passes of the cyclic garbage collector (see `Batch._collect_garbage`).
COLLECT_EVERY = 250


class Observer(Protocol):
    async def watch(self, stats: RunStats) -> None:
        """Runs for the length of the batch (cancelled at its end): draw progress from ``stats``."""


class _NotSent(Exception):
    """The run is stopping: this item's request was never sent and it stays pending."""


def settings_hash(settings: Settings) -> str:
    text = json.dumps(settings.output_shaping(), sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def public_settings(settings: Settings) -> dict[str, Any]:
    """Settings as recorded in the manifest: never the key."""
    values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings) if f.name != "api_key"}
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in values.items()}


class Batch:
    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine,
        manifest: Manifest,
        clock: Clock | None = None,
        policy: RetryPolicy | None = None,
        observer: Observer | None = None,
    ) -> None:
        from .pacing import Pacer

        assert settings.out_dir is not None
        self.settings = settings
        self.out_dir = settings.out_dir
        self.engine = engine
        self.manifest = manifest
        self.clock = clock or MonotonicClock()
        self.policy = policy or RetryPolicy(
            max_attempts=settings.max_attempts, max_seconds=settings.max_item_seconds,
            base=settings.backoff_base, cap=settings.backoff_cap,
            rate_limit_pause=max(settings.backoff_base, 60.0 / settings.rate) * 5,
        )
        self.observer = observer
        self.pacer = Pacer(settings.rate, clock=self.clock) if engine.paid else None
        self.stats = RunStats()
        self.settings_hash = settings_hash(settings)
        self.options = PreflightOptions.from_settings(settings)
        self.stop_error: RunStopped | None = None
        self.signal_exit: int | None = None
        self.stopping = False
        self.run_id = 0
        self._db_limiter = anyio.CapacityLimiter(1)
        self._cpu = anyio.CapacityLimiter(os.cpu_count() or 2)
        self._reserved = 0
        self._maybe_spent = 0
        self._consecutive_429 = 0
        self._in_progress: dict[str, anyio.Event] = {}
        self._dispatch = anyio.Lock()
        self._outputs = OutputIndex(settings.out_dir)
        self._budget = ByteBudget(settings.inflight_mb * 1_000_000)
        self._intake_scope: anyio.CancelScope | None = None
        self._outer_scope: anyio.CancelScope | None = None
        self._sent_since_collect = 0

    # --- the run ------------------------------------------------------------------------------

    async def run(self) -> RunStats:
        self.run_id = await self._db(self.manifest.start_run, public_settings(self.settings), os.getpid())
        try:
            async with anyio.create_task_group() as outer:
                self._outer_scope = outer.cancel_scope
                if self.observer is not None:
                    outer.start_soon(self.observer.watch, self.stats)
                async with anyio.create_task_group() as tg:
                    ready_send, ready_recv = anyio.create_memory_object_stream[Prepared](2)
                    tg.start_soon(self._intake, ready_send)
                    async with ready_recv:
                        for _ in range(self.settings.workers):
                            tg.start_soon(self._worker, ready_recv.clone())
                outer.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._record_end()
        return self.stats

    async def _record_end(self) -> None:
        try:
            await self._db(
                self.manifest.end_run, self.run_id, counts=self.stats.counts(),
                credits_used=str(self.stats.credits_used),
                remaining=None if self.stats.remaining_credits is None else str(self.stats.remaining_credits),
                requests=self.stats.requests, possibly_charged_twice=self.stats.resent_after_crash,
                exit_code=self.exit_code,
            )
        except ManifestError:
            pass  # the run is failing on this very manifest; that error is what the user sees

    @property
    def exit_code(self) -> int:
        if self.signal_exit is not None:
            return self.signal_exit
        if self.stop_error is not None:
            return self.stop_error.exit_code
        return 1 if self.stats.unfinished_items else 0

    def request_stop(self, *, exit_code: int | None = None, hard: bool = False) -> None:
        """First call: send nothing new, give requests in flight a grace period. Second (or hard): stop now."""
        if exit_code is not None and self.signal_exit is None:
            self.signal_exit = exit_code
        if (self.stopping or hard) and self._outer_scope is not None:
            self._outer_scope.cancel()
        self.stopping = True
        if self._intake_scope is not None:
            self._intake_scope.cancel()
        if self.pacer is not None:
            self.pacer.close()

    async def stop_after_grace(self) -> None:
        """Run beside a stopping batch: cancel whatever is still in flight when the grace period ends."""
        await anyio.sleep(self.settings.grace_seconds)
        if self._outer_scope is not None:
            self._outer_scope.cancel()

    def _stop_run(self, exc: RunStopped) -> None:
        if self.stop_error is None:
            self.stop_error = exc
        self.request_stop()

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Manifest calls run in one worker thread, never on the event loop."""
        try:
            return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs), limiter=self._db_limiter)
        except sqlite3.Error as exc:
            raise ManifestError(f"{self.manifest.path}: {exc}") from None

    async def _cpu_work(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(lambda: fn(*args), limiter=self._cpu)

    # --- intake: walk, manifest, preflight ------------------------------------------------------

    async def _intake(self, ready_send: ObjectSendStream[Prepared]) -> None:
        with anyio.CancelScope() as scope:
            self._intake_scope = scope
            if self.stopping:
                scope.cancel()
            async with anyio.create_task_group() as tg, ready_send:
                due_send, due_recv = anyio.create_memory_object_stream[Pair](64)
                tg.start_soon(self._feed, due_send)
                async with due_recv:
                    for _ in range((os.cpu_count() or 2) + 1):
                        tg.start_soon(self._preflight_loop, due_recv.clone(), ready_send.clone())

    async def _feed(self, due_send: ObjectSendStream[Pair]) -> None:
        source = pairs_for(self.settings)
        async with due_send:
            while chunk := await anyio.to_thread.run_sync(_take, source, WALK_CHUNK):
                for due in await self._triage(chunk):
                    await due_send.send(due)
        self.stats.walk_finished = True

    async def _triage(self, chunk: list[Pair | OrphanMask]) -> list[Pair]:
        """Decide, for a chunk of walked pairs, which are due; record new and changed ones."""
        pairs: list[Pair] = []
        for item in chunk:
            if isinstance(item, Pair):
                pairs.append(item)
            else:
                self.stats.orphan(str(item.path))
        self.stats.seen += len(pairs)
        skipped, undecided = await self._db(self._classify, pairs)
        for status, count in skipped.items():
            self._count_skipped(status, count)
        due: list[Pair] = []
        seen: list[dict[str, Any]] = []
        for pair, row, decision in undecided:
            if decision is Decision.CHECK_HASH:
                decision = await self._check_content(pair, row)
            if decision is Decision.SKIP:
                self._count_skipped(row.status if row else "", 1)
                continue
            status, error = self._walk_status(pair)
            seen.append(_seen_row(pair, status, error))
            if status == "pending":
                due.append(pair)
            elif status == "no_mask":
                self.stats.no_mask += 1
            else:
                self.stats.problem(pair.key, "invalid", error or "")
        if seen:
            await self._db(self.manifest.upsert_seen, seen)
        self.stats.due += len(due)
        return due

    def _classify(self, pairs: list[Pair]) -> tuple[dict[str, int], list[tuple[Pair, ItemRow | None, Decision]]]:
        """In the manifest thread: skip what is done and unchanged (counted by status), return the rest.

        A re-run over a million done items spends its time here, so the common case stays this small."""
        rows = self.manifest.lookup([p.key for p in pairs])
        skipped: dict[str, int] = {}
        undecided: list[tuple[Pair, ItemRow | None, Decision]] = []
        for pair in pairs:
            row = rows.get(pair.key)
            decision = decide(pair, row, settings_hash=self.settings_hash, outputs=self._outputs,
                              retry_failed=self.settings.retry_failed, force=self.settings.force)
            if decision is Decision.SKIP and row is not None:
                skipped[row.status] = skipped.get(row.status, 0) + 1
            else:
                undecided.append((pair, row, decision))
        return skipped, undecided

    def _walk_status(self, pair: Pair) -> tuple[str, str | None]:
        if pair.problem is not None:
            return "invalid", pair.problem
        if pair.mask is None:
            return "no_mask", "no mask for this image"
        return "pending", None

    def _count_skipped(self, status: str, count: int) -> None:
        if status in ("done", "empty_mask"):
            self.stats.already_done += count
        elif status == "no_mask":
            self.stats.no_mask += count
        else:
            self.stats.kept_failed += count

    async def _check_content(self, pair: Pair, row: Any) -> Decision:
        """Size or mtime moved: the item is still done only if both files hash the same as before."""
        if not await self._cpu_work(_same_content, pair, row.image_hash, row.mask_hash):
            return Decision.DUE
        assert pair.image_sig is not None
        mask = (pair.mask_sig.size, pair.mask_sig.mtime_ns) if pair.mask_sig else None
        await self._db(self.manifest.refresh_signatures, pair.key, (pair.image_sig.size, pair.image_sig.mtime_ns), mask)
        return Decision.SKIP

    async def _preflight_loop(self, due_recv: ObjectReceiveStream[Pair], ready_send: ObjectSendStream[Prepared]) -> None:
        async with due_recv, ready_send:
            async for pair in due_recv:
                prepared = await self._preflight(pair)
                if prepared is not None:
                    await ready_send.send(prepared)

    async def _preflight(self, pair: Pair) -> Prepared | None:
        """Prepared for sending, or None when the item was settled without a request."""
        try:
            prepared = await self._cpu_work(prepare, pair, self.options)
        except InvalidInput as exc:
            await self._settle(pair.key, "invalid", str(exc))
            return None
        except Exception as exc:  # one strange file must never stop the run
            await self._settle(pair.key, "invalid", f"could not be prepared ({type(exc).__name__}: {exc})")
            return None
        self.stats.fixed(prepared.fixes)
        for warning in prepared.warnings:
            self.stats.note(pair.key, warning)
        if prepared.empty_mask:
            await self._empty_mask(prepared)
            return None
        return prepared

    def _fingerprint(self, prepared: Prepared) -> dict[str, Any]:
        """What the manifest keeps of a prepared item: how to tell later that nothing changed."""
        return {
            "image_hash": prepared.image_hash, "mask_hash": prepared.mask_hash,
            "settings_hash": self.settings_hash, "content_key": prepared.content_key,
            "fixes": json.dumps(list(prepared.fixes)) if prepared.fixes else None,
            "warnings": json.dumps(list(prepared.warnings)) if prepared.warnings else None,
        }

    async def _settle(self, key: str, status: str, reason: str, error_status: int | None = None) -> None:
        if status in ("failed", "invalid"):
            self.stats.problem(key, status, reason)
        await self._db(self.manifest.update, key, status=status, error=reason, error_status=error_status,
                       settings_hash=self.settings_hash, finished_at=time.time())

    async def _empty_mask(self, prepared: Prepared) -> None:
        key = prepared.pair.key
        self.stats.empty_mask += 1
        self.stats.note(key, "the mask is empty: nothing to remove, no request sent")
        fields: dict[str, Any] = {"status": "empty_mask", "error": "mask is empty", "finished_at": time.time(),
                                  **self._fingerprint(prepared)}
        if self.settings.copy_empty:
            try:
                data = await self._cpu_work(compose.finish, prepared, None, self.settings.output_format, self.settings.quality)
                fields.update(await self._store(prepared.pair, data))
            except BatchInpaintError as exc:
                self.stats.note(key, f"could not copy the original: {exc}")
        await self._db(self.manifest.update, key, **fields)

    async def _reuse_done(self, prepared: Prepared, *, this_run_only: bool) -> bool:
        """An identical pair (same image, mask and settings) already has a result: copy it, pay nothing.

        With --force only results made by this run count: the point of --force is to redo the old ones.
        """
        source = await self._db(self.manifest.find_done_output, prepared.content_key, self.settings_hash,
                                self.run_id if this_run_only else None)
        if source is None:
            return False
        target = prepared.pair.output_rel(self.settings.output_format)
        try:
            data = await anyio.to_thread.run_sync((self.out_dir / source).read_bytes)
            fields = await self._store(prepared.pair, data)
        except (OSError, BatchInpaintError):
            return False
        await self._db(self.manifest.update, prepared.pair.key, status="done", credits="0", error=None,
                       error_status=None, finished_at=time.time(), run_id=self.run_id,
                       **fields, **self._fingerprint(prepared))
        self.stats.copied += 1
        if source != target:
            self.stats.note(prepared.pair.key, f"identical to an earlier pair; result copied from {source}")
        return True

    # --- workers: pace, send, retry, write ------------------------------------------------------

    async def _worker(self, ready_recv: ObjectReceiveStream[Prepared]) -> None:
        """Take the next item only when it can be sent: waiting workers hold no pictures in memory.

        One worker at a time takes an item, waits for room in the byte budget and for its send slot;
        the rest wait empty-handed. The pacer spaces sends anyway, so this costs no throughput.
        """
        async with ready_recv:
            while True:
                async with self._dispatch:
                    try:
                        prepared = await ready_recv.receive()
                    except anyio.EndOfStream:
                        return
                    if self.stopping:
                        continue
                    # A pair identical to one already done (this run, or an earlier one unless --force)
                    # is a copy: it needs neither a send slot nor a credit.
                    if await self._reuse_done(prepared, this_run_only=self.settings.force):
                        continue
                    cost = footprint(prepared)
                    await self._budget.acquire(cost)
                    if self.pacer is not None:
                        await self.pacer.acquire()  # the first send slot; retries queue for theirs
                try:
                    await self._process(prepared)
                finally:
                    self._budget.release(cost)
                    del prepared  # an idle worker must not keep its last picture alive

    async def _process(self, prepared: Prepared) -> None:
        key = prepared.pair.key
        content = prepared.content_key
        while content in self._in_progress:  # an identical pair is being sent: wait for its result
            await self._in_progress[content].wait()
        # Asked again: an identical pair may have finished while this one waited for its send slot.
        if await self._reuse_done(prepared, this_run_only=self.settings.force):
            return
        done = self._in_progress[content] = anyio.Event()
        started = time.time()
        try:
            data, result = await self._send_with_retries(prepared)
            fields = await self._store(prepared.pair, data)
            consumed = result.credits_consumed if result.credits_consumed is not None else Decimal(1) if self.engine.paid else Decimal(0)
            await self._db(
                self.manifest.update, key, status="done", error=None, error_status=None,
                credits=str(consumed), finished_at=time.time(), seconds=round(time.time() - started, 3),
                remaining_credits=None if result.remaining_credits is None else str(result.remaining_credits),
                **fields,
            )
            self.stats.done += 1
        except _NotSent:
            await self._db(self.manifest.update, key, status="pending")
        except RunStopped as exc:
            await self._db(self.manifest.update, key, status="pending", error=str(exc), error_status=exc.status)
            self._stop_run(exc)
        except OutputError as exc:
            await self._settle(key, "failed", f"paid for, but the output could not be written: {exc}")
            if exc.errno in DISK_ERRNOS:
                self._stop_run(DiskUnwritable(f"stopped so no more credits are spent on results that cannot be saved: {exc}"))
        except ItemError as exc:
            await self._settle(key, "invalid" if isinstance(exc, InvalidInput) else "failed", str(exc),
                               getattr(exc, "status", None))
        except Retryable as exc:
            await self._settle(key, "failed", f"gave up after {self.policy.max_attempts} attempts or "
                               f"{self.policy.max_seconds:g} s: {exc}", exc.status)
        finally:
            del self._in_progress[content]
            done.set()
            self._collect_garbage()

    def _collect_garbage(self) -> None:
        """Each item's retry state and its tenacity retrier refer to each other, about 5 KB an item
        (more when an attempt failed: its exception's frames hold the picture). Such cycles outlive
        the young generations, and the full pass that frees them may never come in a long run (none
        in a 1,000-item one), so memory would creep up with the run's length. A full pass every few
        hundred items keeps it flat for a few milliseconds each."""
        self._sent_since_collect += 1
        if self._sent_since_collect >= COLLECT_EVERY:
            self._sent_since_collect = 0
            gc.collect()

    async def _store(self, pair: Pair, data: bytes) -> dict[str, Any]:
        """Write one output atomically; the manifest fields that say where and what it is."""
        rel = pair.output_rel(self.settings.output_format)
        path = output_path(self.out_dir, rel)
        for source in (pair.image, pair.mask):
            if source is not None and os.path.exists(path) and os.path.samefile(source, path):
                raise OutputError(f"output {rel} would overwrite an input")
        output_hash = await anyio.to_thread.run_sync(_write_output, path, data)
        return {"output_path": rel, "output_hash": output_hash, "output_size": len(data)}

    async def _send_with_retries(self, prepared: Prepared) -> tuple[bytes, InpaintResult]:
        request = InpaintRequest(prepared.image_bytes, prepared.image_type, prepared.mask_png, prepared.size,
                                 self.settings.mode, prepared.pair.key)
        start = self.clock.now()
        rate_limited = 0

        def stop(state: RetryCallState) -> bool:
            """A 429 says nothing about the item, only about pacing: it does not use up an attempt.
            The per-item time cap still bounds an item that is rate-limited forever."""
            nonlocal rate_limited
            if state.outcome is not None and isinstance(state.outcome.exception(), RateLimited):
                rate_limited += 1
            return (state.attempt_number - rate_limited >= self.policy.max_attempts or self.stopping
                    or self.clock.now() - start >= self.policy.max_seconds)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return 0.0 if isinstance(exc, RateLimited) else self.policy.backoff(state.attempt_number)

        retrying = AsyncRetrying(retry=retry_if_exception(is_retryable), stop=stop, wait=wait,
                                 sleep=self.clock.sleep, reraise=True)
        async for attempt in retrying:
            with attempt:
                outcome = await self._attempt(prepared, request, attempt.retry_state.attempt_number)
        return outcome

    async def _attempt(self, prepared: Prepared, request: InpaintRequest, number: int) -> tuple[bytes, InpaintResult]:
        if self.pacer is not None and number > 1:
            await self.pacer.acquire()
        if self.stopping:
            raise _NotSent()
        self._reserve_credit()
        if number > 1:
            self.stats.retries += 1
        key = prepared.pair.key
        fingerprint = self._fingerprint(prepared) if number == 1 else {}
        if await self._db(self.manifest.mark_in_flight, key, self.run_id, first=number == 1, **fingerprint):
            self.stats.resent_after_crash += 1
            self.stats.possibly_charged += 1
        self.stats.requests += 1
        try:
            result = await self.engine.inpaint(request)
            data = await self._cpu_work(compose.finish, prepared, result.png, self.settings.output_format, self.settings.quality)
        except BaseException as exc:
            await self._attempt_failed(key, exc)
            raise
        self._reserved -= 1
        self._consecutive_429 = 0
        if self.engine.paid:
            self.stats.credits_used += result.credits_consumed if result.credits_consumed is not None else Decimal(1)
        if result.remaining_credits is not None:
            self.stats.remaining_credits = result.remaining_credits
        return data, result

    async def _attempt_failed(self, key: str, exc: BaseException) -> None:
        self._reserved -= 1
        maybe_charged = isinstance(exc, (TransportError, BrokenResponse))
        if maybe_charged:
            self._maybe_spent += 1  # the server may have charged for an answer we never saw
            self.stats.possibly_charged += 1
        if isinstance(exc, RateLimited):
            self.stats.rate_limited += 1
            self._consecutive_429 += 1
            if self.pacer is not None:
                self.pacer.pause(self.policy.pause_after_429(exc, self._consecutive_429))
        if isinstance(exc, BatchInpaintError):
            with anyio.CancelScope(shield=True):
                await self._db(self.manifest.note_failure, key, error_status=getattr(exc, "status", None),
                               error=str(exc), possibly_charged=maybe_charged)

    def _reserve_credit(self) -> None:
        """With --max-credits, requests in flight count against the budget before they are sent."""
        budget = self.settings.max_credits
        if budget is not None and self.engine.paid:
            committed = self.stats.credits_used + self._reserved + self._maybe_spent
            if committed + 1 > budget:
                raise CreditsExhausted(f"the budget of {budget:g} credits for this run is spent", status=None)
        self._reserved += 1


def _same_content(pair: Pair, image_hash: str | None, mask_hash: str | None) -> bool:
    try:
        return digest(pair.image.read_bytes()) == image_hash and (
            pair.mask is None or digest(pair.mask.read_bytes()) == mask_hash)
    except OSError:
        return False


def _write_output(path: Path, data: bytes) -> str:
    """Write, then hash, in one worker-thread call: hashing a 12 MP result on the event loop would
    hold up every other request for milliseconds."""
    write_atomic(path, data)
    return digest(data)


def _take(source: Iterator[T], n: int) -> list[T]:
    chunk: list[T] = []
    for item in source:
        chunk.append(item)
        if len(chunk) >= n:
            break
    return chunk


def _seen_row(pair: Pair, status: str, error: str | None) -> dict[str, Any]:
    return {
        "key": pair.key, "image_path": str(pair.image), "mask_path": str(pair.mask) if pair.mask else None,
        "image_size": pair.image_sig.size if pair.image_sig else None,
        "image_mtime_ns": pair.image_sig.mtime_ns if pair.image_sig else None,
        "mask_size": pair.mask_sig.size if pair.mask_sig else None,
        "mask_mtime_ns": pair.mask_sig.mtime_ns if pair.mask_sig else None,
        "status": status, "error": error,
    }
