"""Pacing one process: send slots on an evenly spaced grid at the pace `pace.Pace` allows, and a pause
that holds every sender after a 429.

The provider does not say whether its per-minute window is fixed, sliding or a bucket. At most one
request per interval, with a small headroom, keeps every 60-second window at or under the limit under
all three readings, so slots are one interval apart from the first (a bucket that starts full, such as
``AsyncLimiter(60, 60)``, lets about twice the limit through in the first minute).

Slots are claimed on a grid (virtual scheduling): a sender woken a little late does not push the next
slot back. aiolimiter's leaky bucket with a capacity of one was measured here and does push it back:
every wake-up's lateness is lost, 0.970 of the limit at 1,200 a minute against 0.989 for the grid
(benchmarks/RESULTS.md). A larger bucket would catch up, but would let 61 requests into some minute at 60.
"""

from __future__ import annotations

import math

import anyio

from .pace import Pace, Slowdown

#: Fraction of the interval added as headroom, so clock jitter between us and the server never puts
#: limit+1 requests into one of its windows.
DEFAULT_HEADROOM = 0.01
#: ... and at least this much over a whole window: requests leave a busy client, and reach the server,
#: up to tens of milliseconds late, which a short window's 1% does not cover.
JITTER_SECONDS = 0.1


class ProcessLimiter:
    """``per_minute`` requests a minute at most, evenly spaced, for the senders of this process
    (event-loop time); less while the server's limit looks lower. ``window`` is the server's counting
    window (a minute; tests shorten it with the emulator's)."""

    def __init__(self, per_minute: float, *, headroom: float | None = None, window: float = 60.0) -> None:
        self.pace = Pace(per_minute, window=window)
        self.headroom = max(DEFAULT_HEADROOM, JITTER_SECONDS / window) if headroom is None else headroom
        self._next_slot = -math.inf
        self._paused_until = -math.inf

    @property
    def interval(self) -> float:
        return 60.0 / self.pace.per_minute(anyio.current_time()) * (1.0 + self.headroom)

    @property
    def per_minute(self) -> float:
        return self.pace.per_minute(anyio.current_time())

    @property
    def paused_until(self) -> float:
        return self._paused_until

    async def acquire(self) -> None:
        while True:
            now = anyio.current_time()
            slot = max(now, self._next_slot, self._paused_until)
            interval = self.interval
            self._next_slot = slot + interval  # claimed before any await: slots go in call order
            try:
                await anyio.sleep(slot - now)
            except BaseException:
                if self._next_slot == slot + interval:  # the last slot claimed: the next caller takes it
                    self._next_slot = slot
                raise
            if slot >= self._paused_until:
                self.pace.sent(anyio.current_time())
                return
            # A pause began while this caller waited: its slot falls inside the pause, so it claims another.

    async def pause(self, seconds: float) -> None:
        """Hold every sender back for ``seconds`` from now (a longer pause wins)."""
        self._paused_until = max(self._paused_until, anyio.current_time() + max(0.0, seconds))

    async def rate_limited(self, retry_after: float | None, sent_at: float) -> Slowdown:
        slowdown = self.pace.rejected(anyio.current_time(), sent_at, retry_after)
        await self.pause(slowdown.pause)
        return slowdown

    def succeeded(self) -> None:
        self.pace.succeeded(anyio.current_time())

    async def aclose(self) -> None:
        return None
