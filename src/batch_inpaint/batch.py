"""The batch: the wiring of the stages. Each stage lives in a module named for it (docs/architecture.md):

    pairing -> triage -> preflight   (intake)   -> limiter -> sending -> compose -> output -> recording
"""

from __future__ import annotations

import gc
import os
import time
from typing import Protocol

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from . import __version__, compose
from .answers import Answers
from .control import RunControl
from .credits import CreditBudget
from .engines.base import Engine
from .errors import (
    BatchInpaintError, DiskUnwritable, InvalidInput, ItemError, ManifestError, OutputError, Retryable, RunStopped,
    first_error,
)
from .events import JsonLines
from .exitcodes import ExitCode
from .inflight import ByteBudget, footprint
from .intake import Intake
from .limiter import Limiter, Slot
from .metrics import MetricsFile
from .locations import report_thumbs
from .output import OutputWriter
from .pieces import Pieces
from .preflight import Prepared
from .recording import Recorder
from .retrying import RetryPolicy
from .review import Reviewer
from .reuse import Reuse
from .sending import NotSent, Sender
from .settings import Settings, settings_hash
from .settle import Settle
from .stats import RunStats
from .store import LeaseLost, RunEnd, Store
from .store.base import Leases
from .triage import Triage

#: Items sent between two full passes of the cyclic garbage collector (see `Batch._collect_garbage`).
COLLECT_EVERY = 250


class Observer(Protocol):
    async def watch(self, stats: RunStats) -> None:
        """Runs for the length of the batch (cancelled at its end): draw progress from ``stats``."""


class Batch:
    def __init__(self, settings: Settings, *, engine: Engine, store: Store, limiter: Limiter,
                 control: RunControl | None = None, policy: RetryPolicy | None = None,
                 observer: Observer | None = None, settle: Settle | None = None) -> None:
        assert settings.out_dir is not None
        self.settings = settings
        self.store = store
        self.limiter = limiter
        self.control = control or RunControl(settings.grace_seconds)
        self.observer = observer
        machine = settings.log_format == "json"  # events for a collector; no lines for people on stderr
        self.stats = RunStats(verbose=settings.verbose and not machine, sink=JsonLines() if machine else None)
        self.metrics = None if settings.metrics_file is None else MetricsFile(
            settings.metrics_file, store, self.stats, settings.out_dir, settings.metrics_every)
        self.settings_hash = settings_hash(settings, engine.shaping)
        self._cpu = cpu = anyio.CapacityLimiter(os.cpu_count() or 2)
        self.reviewer = Reviewer(report_thumbs(settings) if settings.report else None, store, self.stats)
        self.recorder = Recorder(store, self.stats, self.settings_hash, engine, self.reviewer)
        self.writer = OutputWriter(settings.out_dir, settings.output_format)
        self.answers = Answers(settings.out_dir, settings.output_format, keep=settings.keep_answers)
        self.reuse = Reuse(store, self.writer, self.recorder, self.answers, self._finish, force=settings.force)
        self.intake = Intake(settings, Triage(store, settings, self.settings_hash, record=True, cpu=cpu),
                             self.recorder, self.writer, self.stats, cpu, self._finish, settle)
        self.sender = Sender(engine, limiter, policy or RetryPolicy.from_settings(settings), self.control,
                             self.recorder, CreditBudget(settings.max_credits, engine.credits_per_request),
                             self.stats, self._finish, rate=settings.rate)
        self._dispatch = anyio.Lock()
        self._bytes = ByteBudget(settings.inflight_mb * 1_000_000)
        self._sent_since_collect = 0
        self._escaping: BaseException | None = None

    @property
    def exit_code(self) -> int:
        return self.control.exit_code(self.stats.unfinished_items)

    async def run(self) -> RunStats:
        self.recorder.run_id = await self.store.start_run(self.settings.public(), os.getpid())
        self.stats.emit("run_started", run_id=self.recorder.run_id, version=__version__, pid=os.getpid(),
                        settings=self.settings.public())
        try:
            async with anyio.create_task_group() as outer:
                self.control.bind(outer)
                if self.metrics is not None:
                    outer.start_soon(self.metrics.watch)
                if self.observer is not None:
                    outer.start_soon(self.observer.watch, self.stats)
                outer.start_soon(self.reviewer.run)
                if self.store.leases is not None:
                    outer.start_soon(self._renew_leases, self.store.leases)
                async with anyio.create_task_group() as tg:
                    ready_send, ready_recv = anyio.create_memory_object_stream[Prepared](2)
                    tg.start_soon(self._intake, ready_send)
                    async with ready_recv:
                        for _ in range(self.settings.workers):
                            tg.start_soon(self._worker, ready_recv.clone())
                await self.reviewer.close()
                outer.cancel_scope.cancel()
        except BaseException as exc:
            self._escaping = exc  # the process exits with this error's code: the manifest records that one
            raise
        finally:
            self.control.unbind()
            with anyio.CancelScope(shield=True):
                await self._record_end()
                if self.metrics is not None:
                    await self.metrics.write(self._final_code())
        return self.stats

    def _final_code(self) -> int:
        exc = self._escaping
        if isinstance(exc, BaseExceptionGroup):
            exc = first_error(exc) or exc
        if isinstance(exc, BatchInpaintError):
            return int(getattr(exc, "exit_code", ExitCode.FAILED))
        if exc is None or isinstance(exc, anyio.get_cancelled_exc_class()):
            return self.exit_code
        return int(ExitCode.FAILED)

    async def _renew_leases(self, leases: Leases) -> None:
        while True:
            await anyio.sleep(leases.renew_every)
            await leases.renew(self.recorder.run_id)

    async def _intake(self, ready: MemoryObjectSendStream[Prepared]) -> None:
        with anyio.CancelScope() as scope:
            self.control.bind_intake(scope)
            await self.intake.run(ready)

    async def _record_end(self) -> None:
        s = self.stats
        s.answers_kept, s.answers_kept_bytes = self.answers.kept, self.answers.kept_bytes
        try:
            await self.store.end_run(self.recorder.run_id, RunEnd(
                s.counts(), s.credits_used, s.remaining_credits, s.requests, s.resent_after_crash, self._final_code(),
                s.retries, s.rate_limited))
        except ManifestError:
            pass  # the run is failing on this very store; that error is what the user sees

    async def _finish(self, prepared: Prepared, result_png: Pieces | None) -> Pieces:
        fmt, quality = self.settings.output_format, self.settings.quality
        return await anyio.to_thread.run_sync(compose.finish, prepared, result_png, fmt, quality, limiter=self._cpu)

    async def _worker(self, ready: MemoryObjectReceiveStream[Prepared]) -> None:
        """Take the next item only when it can be sent: waiting workers hold no pictures in memory.

        One worker at a time takes an item, waits for room in the byte budget and for its send slot;
        the rest wait empty-handed. The limiter spaces sends anyway, so this costs no throughput.
        """
        async with ready:
            while True:
                async with self._dispatch:
                    try:
                        prepared = await ready.receive()
                    except anyio.EndOfStream:
                        return
                    # An answer to this very request was paid for already: no send slot, no credit.
                    if self.control.stopping or await self.reuse.reuse(prepared):
                        continue
                    cost = footprint(prepared)
                    await self._bytes.acquire(cost)
                    slot = await self.control.wait_unless_stopped(self.limiter.acquire)
                    self.stats.pace = self.limiter.per_minute
                    for text in self.limiter.news():
                        self.stats.notice(text)
                try:
                    if slot is not None:  # else the run is stopping: the item stays pending, as the walk recorded it
                        await self._process(prepared, slot)
                finally:
                    self._bytes.release(cost)
                    del prepared  # an idle worker must not keep its last picture alive

    async def _process(self, prepared: Prepared, slot: Slot) -> None:
        key = prepared.pair.key
        async with self.reuse.turn(prepared) as send:
            if not send:
                return
            started = time.time()
            try:
                data, result = await self.sender.send(prepared, slot)
                leases = self.store.leases
                if leases is not None and not await leases.holds(key, self.recorder.run_id):
                    self.recorder.lease_lost(key)  # its new holder writes the output: this one never does
                    return
                output = await self.writer.write(prepared.pair, data)
                answer = await self.answers.settle(prepared, self.recorder.request_hash(prepared), result.png)
                await self.recorder.done(prepared, output, result, time.time() - started, answer)
            except NotSent:
                await self.recorder.pending(key)
            except LeaseLost:  # taken on by another worker before this one sent it: that worker's now
                self.recorder.lease_lost(key)
            except RunStopped as exc:
                await self.recorder.pending(key, error=str(exc), error_status=exc.status)
                self.control.fail(exc)
            except OutputError as exc:
                await self.recorder.settle(key, "failed", f"paid for, but the output could not be written: {exc}",
                                           transient=True)  # the disk's or the bucket's fault: the next run retries it
                if self.writer.unusable(exc):
                    self.control.fail(DiskUnwritable(
                        f"stopped so no more credits are spent on results that cannot be saved: {exc}"))
            except ItemError as exc:
                await self.recorder.settle(key, "invalid" if isinstance(exc, InvalidInput) else "failed", str(exc),
                                           exc.status)
            except Retryable as exc:
                if self.control.stopping:  # the run stops (an outage, a signal): not this item's failure
                    await self.recorder.pending(key, error=str(exc), error_status=exc.status)
                    return
                policy = self.sender.policy
                await self.recorder.settle(key, "failed", f"gave up after {policy.max_attempts} attempts or "
                                           f"{policy.max_seconds:g} s: {exc}; the next run tries again",
                                           exc.status, transient=True)
            finally:
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
