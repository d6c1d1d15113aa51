"""A budget of bytes in flight: big pictures take more of it, so memory stays bounded whatever their size."""

from __future__ import annotations

import anyio

from .preflight import Prepared


def footprint(prepared: Prepared) -> int:
    """Bytes an item holds while in flight: what is uploaded, plus room for a raw-sized PNG answer."""
    w, h = prepared.size
    return len(prepared.image_bytes) + len(prepared.mask_png) + w * h * 3


class ByteBudget:
    """Callers wait until their bytes fit; one caller is always let through, however big."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._freed = anyio.Event()

    async def acquire(self, amount: int) -> None:
        while self.used > 0 and self.used + amount > self.limit:
            await self._freed.wait()
        self.used += amount

    def release(self, amount: int) -> None:
        """Synchronous, so it is safe in a finally block under cancellation."""
        self.used -= amount
        self._freed.set()
        self._freed = anyio.Event()
