"""The limiter seam: who may send when. The rate limit belongs to the API key, so the limiter is passed
in beside the engine (`build.open_limiter` makes the one the settings ask for)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import anyio

from .pace import Slowdown


@dataclass(frozen=True, slots=True)
class Slot:
    """A send slot: its request should leave by ``deadline`` (event-loop time). One that leaves later
    says so (`Limiter.sent_late`), or it and the requests of the next slots could crowd one of the
    server's windows. ``at`` is the slot's time on the limiter's own clock."""

    deadline: float = math.inf
    at: float = 0.0

    def late(self) -> bool:
        return anyio.current_time() > self.deadline


class Limiter(Protocol):
    async def acquire(self) -> Slot:
        """Wait for this caller's send slot: one request may go out when it returns; if the slot is
        `late` by the time the request leaves, the caller says so (`sent_late`).

        Cancelling the wait gives the slot up; a run that stops cancels its waiting senders."""

    async def sent_late(self, slot: Slot) -> None:
        """The request of ``slot`` leaves now, after its deadline (a stalled host, a slow disk): the
        sends a window later wait as long, so no window holds more than the limit."""

    async def rate_limited(self, retry_after: float | None, sent_at: float) -> Slowdown | None:
        """A 429 for the request sent at ``sent_at`` (event-loop time): hold every sender back, and
        lower the pace if the server's limit looks lower than the rate (`pace.Pace`)."""

    async def succeeded(self) -> None:
        """A request went through: the next 429 starts a new streak."""

    def news(self) -> list[str]:
        """What the user should be told once, since the last call (runs sharing the key, a lower
        --rate of another run, a board that cannot be used)."""

    @property
    def per_minute(self) -> float | None:
        """The pace now, requests a minute; None for a limiter that does not pace."""

    async def aclose(self) -> None:
        """Release what the limiter holds (connections, files); it is not used afterwards."""


class Unlimited:
    """No pacing: an engine with no rate limit, such as the local one."""

    async def acquire(self) -> Slot:
        return Slot()

    async def sent_late(self, slot: Slot) -> None:
        return None

    async def rate_limited(self, retry_after: float | None, sent_at: float) -> Slowdown | None:
        return None

    async def succeeded(self) -> None:
        return None

    def news(self) -> list[str]:
        return []

    @property
    def per_minute(self) -> float | None:
        return None

    async def aclose(self) -> None:
        return None
