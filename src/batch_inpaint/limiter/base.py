"""The limiter seam: who may send when. The rate limit belongs to the API key, so the limiter is passed
in beside the engine; a run does not build its own."""

from __future__ import annotations

from typing import Protocol


class Limiter(Protocol):
    async def acquire(self) -> None:
        """Wait for this caller's send slot: one request may go out when it returns.

        Cancelling the wait gives the slot up; a run that stops cancels its waiting senders."""

    async def pause(self, seconds: float) -> None:
        """After a 429: hold every sender back for ``seconds`` from now (a longer pause wins)."""

    async def aclose(self) -> None:
        """Release what the limiter holds (connections, files); it is not used afterwards."""


class Unlimited:
    """No pacing: an engine with no rate limit, such as the local one."""

    async def acquire(self) -> None:
        return None

    async def pause(self, seconds: float) -> None:
        return None

    async def aclose(self) -> None:
        return None
