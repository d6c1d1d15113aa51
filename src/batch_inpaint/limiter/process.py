"""Pacing one process alone (``--limiter process``, and library callers that pass no board)."""

from __future__ import annotations

from .boards import MemoryBoard
from .shared import SharedLimiter


class ProcessLimiter(SharedLimiter):
    """``per_minute`` requests a minute at most, evenly spaced, for the senders of this process
    (event-loop time); less while the server's limit looks lower."""

    def __init__(self, per_minute: float, *, headroom: float | None = None, window: float = 60.0,
                 out: str = "") -> None:
        super().__init__(MemoryBoard(), per_minute, window=window, headroom=headroom, out=out)
