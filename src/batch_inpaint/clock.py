"""Injectable time, so pacing and backoff can be tested on a fake clock."""

from __future__ import annotations

import time
from typing import Protocol

import anyio


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))


class FakeClock:
    """Virtual time for tests: sleeping never waits, and sleepers wake in deadline order.

    A sleeper lets the other tasks run first, then the earliest deadline moves the clock to itself.
    Good enough for tests whose tasks all block on this clock or finish quickly.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._deadlines: list[float] = []
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        deadline = self._now + max(0.0, seconds)
        self._deadlines.append(deadline)
        try:
            while True:
                for _ in range(5):
                    await anyio.lowlevel.checkpoint()
                if deadline <= min(self._deadlines):
                    self._now = max(self._now, deadline)
                    return
        finally:
            self._deadlines.remove(deadline)
