"""Request pacing: evenly spaced sends (a token bucket with a burst of 1) and a shared 429 pause.

The provider does not say whether its 60-per-minute window is fixed, sliding or a bucket. Sending at
most one request per interval, with a small headroom, keeps every 60-second window at or under the
limit under all three readings. A bucket that starts full (``AsyncLimiter(60, 60)``) would let about
twice the limit through in the first minute, which is why this is not a plain aiolimiter.
"""

from __future__ import annotations

import anyio

from .clock import Clock, MonotonicClock

#: Fraction of the interval added as headroom, so clock jitter between us and the server never
#: puts limit+1 requests into one of its windows.
DEFAULT_HEADROOM = 0.01


class Pacer:
    def __init__(
        self,
        per_minute: float,
        *,
        clock: Clock | None = None,
        headroom: float = DEFAULT_HEADROOM,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("rate must be positive")
        self.interval = 60.0 / per_minute * (1.0 + headroom)
        self.clock = clock or MonotonicClock()
        self._next_slot = float("-inf")
        self._paused_until = float("-inf")
        self._lock = anyio.Lock()
        self._waiting: set[anyio.CancelScope] = set()
        self.closed = False

    @property
    def paused_until(self) -> float:
        return self._paused_until

    def pause(self, seconds: float) -> None:
        """Hold back every sender for ``seconds`` from now (after a 429)."""
        until = self.clock.now() + max(0.0, seconds)
        if until > self._paused_until:
            self._paused_until = until
        if self._next_slot < self._paused_until:
            self._next_slot = self._paused_until

    def close(self) -> None:
        """Release every waiting caller at once (the run is stopping; they must check why they woke)."""
        self.closed = True
        for scope in self._waiting:
            scope.cancel()

    async def acquire(self) -> None:
        """Wait for this caller's send slot. Slots are handed out in call order. Returns at once once closed."""
        while not self.closed:
            async with self._lock:
                now = self.clock.now()
                slot = max(now, self._next_slot, self._paused_until)
                self._next_slot = slot + self.interval
            with anyio.CancelScope() as scope:
                self._waiting.add(scope)
                try:
                    await self.clock.sleep(slot - now)
                finally:
                    self._waiting.discard(scope)
            if self.clock.now() >= self._paused_until:
                return
