"""Pacing one process: send slots on an evenly spaced grid, and a pause that holds every sender after a 429.

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

#: Fraction of the interval added as headroom, so clock jitter between us and the server never puts
#: limit+1 requests into one of its windows.
DEFAULT_HEADROOM = 0.01


class ProcessLimiter:
    """``per_minute`` requests a minute, evenly spaced, for the senders of this process (event-loop time)."""

    def __init__(self, per_minute: float, *, headroom: float = DEFAULT_HEADROOM) -> None:
        if not 0 < per_minute < math.inf:
            raise ValueError("rate must be a positive number of requests per minute")
        self.interval = 60.0 / per_minute * (1.0 + headroom)
        self._next_slot = -math.inf
        self._paused_until = -math.inf

    @property
    def paused_until(self) -> float:
        return self._paused_until

    async def acquire(self) -> None:
        while True:
            now = anyio.current_time()
            slot = max(now, self._next_slot, self._paused_until)
            self._next_slot = slot + self.interval  # claimed before any await: slots go in call order
            try:
                await anyio.sleep(slot - now)
            except BaseException:
                if self._next_slot == slot + self.interval:  # the last slot claimed: the next caller takes it
                    self._next_slot = slot
                raise
            if slot >= self._paused_until:
                return
            # A pause began while this caller waited: its slot falls inside the pause, so it claims another.

    async def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, anyio.current_time() + max(0.0, seconds))

    async def aclose(self) -> None:
        return None
