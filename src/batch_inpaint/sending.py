"""Send: one prepared item through the engine, a send slot per attempt, retried on an explicit predicate."""

from __future__ import annotations

import anyio
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from .compose import Finish
from .control import RunControl
from .credits import CreditBudget
from .engines.base import Engine, InpaintRequest, InpaintResult
from .breaker import OutageBreaker
from .errors import ApiUnreachable, BatchInpaintError, RateLimited, Retryable, is_outage, maybe_charged
from .limiter import Limiter, Slot
from .pieces import Pieces
from .preflight import Prepared
from .recording import Recorder
from .retrying import RetryPolicy, is_retryable
from .stats import RunStats
from .store import LeaseLost


class NotSent(Exception):
    """The run is stopping: this item's request was never sent and it stays pending."""


class Sender:
    def __init__(self, engine: Engine, limiter: Limiter, policy: RetryPolicy, control: RunControl,
                 recorder: Recorder, budget: CreditBudget, stats: RunStats, finish: Finish, *, rate: float) -> None:
        self.engine = engine
        self.limiter = limiter
        self.policy = policy
        self.control = control
        self.recorder = recorder
        self.budget = budget
        self.stats = stats
        self.finish = finish
        self.rate = rate
        self._said_slower = False
        self._breaker: OutageBreaker | None = None

    async def send(self, prepared: Prepared, slot: Slot) -> tuple[Pieces, InpaintResult]:
        """The caller holds the first send ``slot``; each retry waits for a slot of its own."""
        request = InpaintRequest(prepared.image_bytes, prepared.image_type, prepared.mask_png, prepared.size,
                                 prepared.pair.key)
        start = anyio.current_time()
        rate_limited = 0

        def stop(state: RetryCallState) -> bool:
            """A 429 says nothing about the item, only about pacing: it does not use up an attempt.
            The per-item time cap still bounds an item that is rate-limited forever."""
            nonlocal rate_limited
            if state.outcome is not None and isinstance(state.outcome.exception(), RateLimited):
                rate_limited += 1
            return (state.attempt_number - rate_limited >= self.policy.max_attempts or self.control.stopping
                    or anyio.current_time() - start >= self.policy.max_seconds)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, RateLimited):  # the limiter holds everyone back when 429s go on
                return exc.retry_after or 0.0
            return self.policy.backoff(state.attempt_number - rate_limited)

        retrying = AsyncRetrying(retry=retry_if_exception(is_retryable), stop=stop, wait=wait, sleep=anyio.sleep,
                                 reraise=True)
        try:
            async for attempt in retrying:
                with attempt:
                    number = attempt.retry_state.attempt_number
                    outcome = await self._attempt(prepared, request, number, slot if number == 1 else None)
        except Retryable as exc:
            if is_outage(exc) and self.breaker.gave_up(start):
                self._outage()
            raise
        return outcome

    @property
    def breaker(self) -> OutageBreaker:
        if self._breaker is None:
            self._breaker = OutageBreaker(self.policy.outage_seconds, started=anyio.current_time())
        return self._breaker

    def _outage(self) -> None:
        self.control.fail(ApiUnreachable(f"the API could not be reached: {self.breaker.describe(anyio.current_time())}."
                                         " Items not done are left pending: run again when the API is back"))

    async def _attempt(self, prepared: Prepared, request: InpaintRequest, number: int,
                       slot: Slot | None) -> tuple[Pieces, InpaintResult]:
        if slot is None:  # a retry: a slot of its own
            slot = await self.control.wait_unless_stopped(self.limiter.acquire)
        if slot is None or self.control.stopping:
            raise NotSent()
        self.budget.reserve()
        if number > 1:
            self.stats.retries += 1
        try:
            await self.recorder.in_flight(prepared, first=number == 1)
        except LeaseLost:  # another worker of the job has the item: nothing goes out, nothing is reserved
            self.budget.settle(spent=None)
            raise
        if slot.late():  # recording it took past the slot's deadline: a stalled host, a slow disk
            await self.limiter.sent_late(slot)
        sent_at = anyio.current_time()
        try:
            result = await self.engine.inpaint(request)
        except BaseException as exc:
            self._heard(exc)
            await self._failed(prepared.pair.key, exc, sent_at)
            raise
        self.breaker.answered(anyio.current_time())
        await self.limiter.succeeded()
        try:
            data = await self.finish(prepared, result.png)
        except BaseException as exc:
            await self._failed(prepared.pair.key, exc, sent_at)
            raise
        self.budget.settle(spent=result.credits_consumed)
        self.stats.credits_used += result.credits_consumed
        if result.remaining_credits is not None:
            # answers arrive out of order: the lowest count reported is the latest
            known = self.stats.remaining_credits
            self.stats.remaining_credits = result.remaining_credits if known is None else min(known,
                                                                                              result.remaining_credits)
        return data, result

    def _heard(self, exc: BaseException) -> None:
        """Feed the outage breaker: any answer shows the API is there; a lost request may show it is not."""
        now = anyio.current_time()
        if is_outage(exc):
            if self.breaker.failed(now):
                self._outage()
        elif isinstance(exc, BatchInpaintError):
            self.breaker.answered(now)

    async def _failed(self, key: str, exc: BaseException, sent_at: float) -> None:
        self.budget.settle(spent=None, maybe_charged=maybe_charged(exc))
        with anyio.CancelScope(shield=True):
            if isinstance(exc, RateLimited):
                await self._slow_down(exc, sent_at)
            await self.recorder.attempt_failed(key, exc)

    async def _slow_down(self, exc: RateLimited, sent_at: float) -> None:
        slowdown = await self.limiter.rate_limited(exc.retry_after, sent_at)
        if slowdown is None:
            return
        self.stats.pace = slowdown.per_minute
        self.stats.paused_until = anyio.current_time() + slowdown.pause
        if slowdown.lowered and not self._said_slower:
            self._said_slower = True
            self.stats.notice(f"the server's limit looks lower than --rate {self.rate:g}: "
                              f"pacing at {slowdown.per_minute:.0f}/min, and back up toward "
                              f"{self.rate:g} when it allows")
