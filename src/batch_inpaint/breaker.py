"""Telling an outage from an item's failure: when nothing reaches the API for a while, stop the run.

Without this, an unreachable API turned every item into a failure after its retries (80 s for five
items), and the next scheduled run left them failed. An outage is the run's problem, not the items':
the run stops with its own exit code and every item stays pending for the next run.

Any answer from the API (a 429 or a 400 too) shows it is there. The breaker opens when failures in a
row (transport failures, and the gateway's 502/503/504) have gone on for ``seconds`` from the first of
them (time spent in our own pauses before it does not count), or when an item used up its attempts
with no answer from the API since it was first sent.
Pure, on whatever clock the caller passes.
"""

from __future__ import annotations

#: Failures in a row before the time limit can open the breaker: one slow failure is not an outage.
MIN_FAILURES = 3


class OutageBreaker:
    def __init__(self, seconds: float, *, started: float) -> None:
        self.seconds = seconds
        self._last_answer = started
        self._first_failure = started
        self._failures = 0

    def answered(self, now: float) -> None:
        self._last_answer = now
        self._failures = 0

    def failed(self, now: float) -> bool:
        """An outage-like failure at ``now``: True if the API now counts as unreachable."""
        if not self._failures:
            self._first_failure = now
        self._failures += 1
        return self._failures >= MIN_FAILURES and now - self._first_failure >= self.seconds

    def gave_up(self, first_sent: float) -> bool:
        """An item ran out of attempts on outage-like failures: True if the API has not answered since
        the item was first sent (the item says nothing about itself then)."""
        return self._last_answer < first_sent

    def describe(self, now: float) -> str:
        return f"every request for {now - self._first_failure:.0f} s failed on the way ({self._failures} in a row)"
