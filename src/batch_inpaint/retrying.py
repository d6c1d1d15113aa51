"""When and how long to retry: an explicit predicate and exponential backoff with full jitter. How long
a 429 holds every sender back is the limiter's business (`limiter.pace`)."""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .errors import Retryable

if TYPE_CHECKING:
    from .settings import Settings


def is_retryable(exc: BaseException) -> bool:
    """Retry only our own retryable errors; never bare exceptions, never cancellation."""
    return isinstance(exc, Retryable)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        current = time.time() if now is None else now
        seconds = when.timestamp() - current
    if seconds != seconds or seconds == float("inf"):  # NaN or inf
        return None
    return max(0.0, min(seconds, 3600.0))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds on retries of one item. ``base``/``cap`` shape the exponential backoff."""

    max_attempts: int = 8
    max_seconds: float = 600.0
    base: float = 1.0
    cap: float = 60.0
    #: No answer from the API for this long (and failures in a row): the run stops (`breaker`).
    outage_seconds: float = 60.0

    @classmethod
    def from_settings(cls, s: "Settings") -> "RetryPolicy":
        return cls(max_attempts=s.max_attempts, max_seconds=s.max_item_seconds, base=s.backoff_base,
                   cap=s.backoff_cap, outage_seconds=s.outage_seconds)

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Full jitter: a uniform draw in [0, min(cap, base * 2**(attempt-1))]."""
        ceiling = min(self.cap, self.base * (2 ** max(0, attempt - 1)))
        return float(rand() * ceiling)
