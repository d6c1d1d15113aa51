"""Pacing one process: evenly spaced send slots, and a pause that holds every sender after a 429.

The provider does not say whether its per-minute window is fixed, sliding or a bucket. At most one
request per interval, with a small headroom, keeps every 60-second window at or under the limit under
all three readings. That is aiolimiter's leaky bucket with a capacity of 1: a bucket that starts full
(``AsyncLimiter(60, 60)``) would let about twice the limit through in the first minute.
"""

from __future__ import annotations

import math

import anyio
from aiolimiter import AsyncLimiter

#: Fraction of the interval added as headroom, so clock jitter between us and the server never puts
#: limit+1 requests into one of its windows.
DEFAULT_HEADROOM = 0.01
#: The bucket holds one request and this sliver more: the leak is computed in floats, and at the exact
#: wake-up time it can leave a residue (2e-16) that would ask for a wake-up the clock cannot represent.
#: A real clock moves past it; an exact fake clock (tests) would wait forever. One part in a billion of
#: a slot is nanoseconds early, far inside the headroom.
_TOLERANCE = 1e-9


class ProcessLimiter:
    """``per_minute`` requests a minute, evenly spaced, for the senders of this process (event-loop time)."""

    def __init__(self, per_minute: float, *, headroom: float = DEFAULT_HEADROOM) -> None:
        if not 0 < per_minute < math.inf:
            raise ValueError("rate must be a positive number of requests per minute")
        self.interval = 60.0 / per_minute * (1.0 + headroom)
        self._bucket = AsyncLimiter(1 + _TOLERANCE, self.interval)
        self._paused_until = -math.inf

    @property
    def paused_until(self) -> float:
        return self._paused_until

    async def acquire(self) -> None:
        while True:
            wait = self._paused_until - anyio.current_time()
            if wait > 0:
                await anyio.sleep(wait)
                continue
            await self._bucket.acquire()
            if anyio.current_time() >= self._paused_until:
                return
            # A pause began while this caller waited: its slot falls inside the pause, so it waits again.

    async def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, anyio.current_time() + max(0.0, seconds))

    async def aclose(self) -> None:
        return None
