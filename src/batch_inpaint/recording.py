"""Record: each item's outcome goes to the store and to the run's live counters, in one place."""

from __future__ import annotations

import time
from decimal import Decimal

import anyio

from .engines.base import Engine, InpaintResult, request_hash
from .errors import BatchInpaintError, RateLimited, maybe_charged
from .pieces import Pieces
from .preflight import Prepared
from .review import Reviewer
from .stats import RunStats
from .triage import Adoption
from .store import AnswerSource, Fingerprint, LeaseLost, OutputRecord, Store
from .store.base import Problem


class Recorder:
    def __init__(self, store: Store, stats: RunStats, settings_hash: str, engine: Engine,
                 reviewer: Reviewer | None = None) -> None:
        self.store = store
        self.reviewer = reviewer or Reviewer(None)
        self.stats = stats
        self.settings_hash = settings_hash
        self.run_id = 0
        #: Requests sent this run for each item not settled yet, and when the first went out: the
        #: events say how many it took and how long.
        self._attempts: dict[str, tuple[int, float]] = {}
        self._shaping, self._endpoint = dict(engine.shaping), engine.endpoint

    def request_hash(self, prepared: Prepared) -> str:
        return request_hash(prepared.payload_hash, self._shaping, self._endpoint)

    def fingerprint(self, prepared: Prepared) -> Fingerprint:
        return Fingerprint(prepared.image_hash, prepared.mask_hash, self.settings_hash, prepared.content_key,
                           tuple(prepared.fixes), tuple(prepared.warnings), self.request_hash(prepared))

    async def in_flight(self, prepared: Prepared, first: bool) -> None:
        """Before each request goes out."""
        fingerprint = self.fingerprint(prepared) if first else None
        if await self.store.mark_in_flight(prepared.pair.key, self.run_id, fingerprint):
            self.stats.resent_after_crash += 1
            self.stats.possibly_charged += 1
        self.stats.requests += 1
        key = prepared.pair.key
        count, since = self._attempts.get(key, (0, time.monotonic()))
        self._attempts[key] = (count + 1, since)

    async def attempt_failed(self, key: str, exc: BaseException) -> None:
        charged = maybe_charged(exc)
        if charged:
            self.stats.possibly_charged += 1  # the server may have charged for an answer we never saw
        if isinstance(exc, RateLimited):
            self.stats.rate_limited += 1
            self.stats.emit("rate_limited", "warning", path=key, count=self.stats.rate_limited,
                            pause_seconds=round(max(0.0, self.stats.paused_until - anyio.current_time()), 3),
                            pace_per_minute=self.stats.pace)
        if isinstance(exc, BatchInpaintError):
            await self.store.note_attempt_failure(key, error_status=getattr(exc, "status", None), error=str(exc),
                                                  possibly_charged=charged)

    async def done(self, prepared: Prepared, output: OutputRecord, result: InpaintResult, seconds: float,
                   answer: str | None) -> None:
        try:
            await self.store.record_done(prepared.pair.key, self.run_id, output=output,
                                         credits=result.credits_consumed, remaining=result.remaining_credits,
                                         seconds=round(seconds, 3), fingerprint=None, answer=answer)
        except LeaseLost:
            self.lease_lost(prepared.pair.key)
            return
        await self.reviewer.offer(prepared, result.png, result.preview)
        self.stats.done += 1
        self.stats.event(f"done: {prepared.pair.key}")
        self.stats.emit("item_done", path=prepared.pair.key, status="done", how="sent",
                        attempts=self._attempts.pop(prepared.pair.key, (0, 0.0))[0], seconds=round(seconds, 3),
                        credits=result.credits_consumed, output=output.path)

    async def reused(self, prepared: Prepared, output: OutputRecord, source: AnswerSource, answer: str | None,
                     png: Pieces) -> None:
        """The output was made from an answer already paid for (``png``): nothing paid."""
        key = prepared.pair.key
        try:
            await self.store.record_done(key, self.run_id, output=output, credits=Decimal(0), remaining=None,
                                         seconds=None, fingerprint=self.fingerprint(prepared), answer=answer)
        except LeaseLost:
            self.lease_lost(key)
            return
        await self.reviewer.offer(prepared, png)
        self.stats.event(f"done: {key} (from an answer already paid for)")
        how = "reencoded" if source.key == key else "copied"
        self.stats.emit("item_done", path=key, status="done", how=how, attempts=0, seconds=None, credits=0,
                        output=output.path)
        if source.key == key:
            self.stats.reencoded += 1
        else:
            self.stats.copied += 1
            self.stats.note(key, f"identical to {source.key}: made from its answer, nothing paid")

    def lease_lost(self, key: str) -> None:
        """Another worker of the job took the item on while this one held it: that worker's record stands."""
        self._attempts.pop(key, None)
        self.stats.lease_lost += 1
        self.stats.note(key, "another worker took it on while this one was held up past its lease: "
                             "this result is not recorded")

    async def adopted(self, adoption: Adoption) -> None:
        """An output already there, with no result on record: done, nothing paid."""
        assert adoption.output is not None and adoption.image_hash is not None
        mask_hash = adoption.mask_hash or ""
        fingerprint = Fingerprint(adoption.image_hash, mask_hash, self.settings_hash,
                                  f"{adoption.image_hash}:{mask_hash}")
        await self.store.record_done(adoption.pair.key, self.run_id, output=adoption.output, credits=Decimal(0),
                                     remaining=None, seconds=None, fingerprint=fingerprint)
        self.stats.adopted += 1
        self.stats.event(f"done: {adoption.pair.key} (already in the output folder)")
        self.stats.emit("item_done", path=adoption.pair.key, status="done", how="adopted", attempts=0, seconds=None,
                        credits=0, output=adoption.output.path)

    async def empty_mask(self, prepared: Prepared, output: OutputRecord | None) -> None:
        self.stats.event(f"empty mask, nothing to remove: {prepared.pair.key}")
        self.stats.emit("item_skipped", path=prepared.pair.key, status="empty_mask",
                        reason="the mask is empty: nothing to remove, no request sent")
        await self.store.record_empty_mask(prepared.pair.key, self.fingerprint(prepared), output)

    async def settle(self, key: str, status: Problem, reason: str, error_status: int | None = None, *,
                     transient: bool = False) -> None:
        """The item failed or is invalid: it waits for a change or --retry-failed, unless the failure was
        ``transient`` (a later run tries it again by itself)."""
        attempts, first = self._attempts.pop(key, (0, None))
        seconds = None if first is None else round(time.monotonic() - first, 3)
        self.stats.problem(key, status, reason, attempts=attempts, seconds=seconds, http_status=error_status)
        self.stats.event(f"{status}: {key}: {reason}")
        await self.store.record_failure(key, status=status, error=reason, error_status=error_status,
                                        settings_hash=self.settings_hash, transient=transient)

    async def pending(self, key: str, *, error: str | None = None, error_status: int | None = None) -> None:
        """Never sent, or the run stopped: the next run takes it up."""
        self._attempts.pop(key, None)
        await self.store.release(key, error=error, error_status=error_status)
