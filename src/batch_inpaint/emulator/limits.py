"""The rate-limit windows a real server might use; the emulator can play each of them."""

from __future__ import annotations

import collections
import math


class Window:
    """Per-key admission: ``admit(now)`` records the request and says whether it is within the limit."""

    def __init__(self, kind: str, limit: float, seconds: float = 60.0) -> None:
        self.kind = kind
        self.limit = limit
        self.seconds = seconds
        self._times: collections.deque[float] = collections.deque()
        self._fixed_start = -math.inf
        self._fixed_count = 0
        self._tokens = limit
        self._last = None  # type: float | None

    def admit(self, now: float) -> bool:
        if self.kind == "fixed":
            return self._fixed(now)
        if self.kind == "bucket":
            return self._bucket(now)
        return self._sliding(now)

    def _sliding(self, now: float) -> bool:
        """Every request counts, rejected ones too: at most ``limit`` in any window."""
        while self._times and self._times[0] <= now - self.seconds:
            self._times.popleft()
        admitted = len(self._times) < self.limit
        self._times.append(now)
        return admitted

    def _fixed(self, now: float) -> bool:
        start = math.floor(now / self.seconds) * self.seconds
        if start != self._fixed_start:
            self._fixed_start, self._fixed_count = start, 0
        self._fixed_count += 1
        return self._fixed_count <= self.limit

    def _bucket(self, now: float) -> bool:
        """A bucket that starts full, as many API gateways do."""
        if self._last is not None:
            self._tokens = min(self.limit, self._tokens + (now - self._last) * self.limit / self.seconds)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
