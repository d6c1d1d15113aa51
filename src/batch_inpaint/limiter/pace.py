"""The pace a key's limit really allows, learned from 429s: multiplicative decrease, additive increase.

`--rate` is what the user believes the limit is. The server's may be lower (an older page said 50 a
minute), may count rejected requests, and may send a short Retry-After or none. Waiting the Retry-After
and sending at full pace again fills a window that counts rejects faster than it drains: measured
against the emulator, 531 429s for 56 pictures. So after a 429:

* **the pace drops** to what the server just let through: our own sends in the last window, less a
  margin, and at least by `DECREASE`, at most by half (two runs sharing a key each see about half the
  window, and so settle at about half the limit each);
* **every sender pauses** until that many of our own sends have left the window, however short the
  Retry-After; a longer Retry-After wins, and 429s in a row double the pause, up to a whole window;
* after a **quiet window** the pace climbs back toward `--rate` by a fixed step per window.

A single 429 among successes is taken as a probe, not a verdict: only that request waits (its
Retry-After), and only a second 429 before `CALM` successes in a row pauses every sender and lowers
the pace. A server whose window is
full answers the next request 429 too; one that sends a stray 429 now and then (an overloaded gateway;
the emulator's fault storm sends 8%) does not, and lowering the pace for each stray would grind a long
run to a crawl. The answers to requests already on their way when the pace dropped say nothing new. Pure, on whatever
clock the caller passes, so it is tested on a fake one.
"""

from __future__ import annotations

import bisect
import collections
import math
from dataclasses import dataclass
from typing import Any

#: At least this factor on each decrease, even when our own sends suggest the limit is higher.
DECREASE = 0.95
#: At most this factor on one decrease: a 429 right after a start (another run's window still full)
#: says little about the limit, and the climb back is slow.
DEEPEST = 0.5
#: Below what the server let through in a window, so the window drains while we send.
MARGIN = 0.03
#: The climb back, per quiet window, as a fraction of the pace the last decrease settled on.
INCREASE = 0.025
#: Added to a pause that drains the window: the server stamps our requests a little later than we do.
SLACK = 0.02
#: The quiet stretch after a 429 before the climb starts, as a fraction of the window.
QUIET = 1.0
#: Successes in a row that end a streak of 429s. One is not enough: a bucket that is nearly empty
#: answers 429 and 200 in turn, which is as much a sign of a full window as 429s in a row.
CALM = 2
#: Never below one request a minute: a key that is refused everything still gets asked now and then.
FLOOR = 1.0


@dataclass(frozen=True, slots=True)
class Slowdown:
    """What a 429 changed: the pace now, whether this 429 lowered it, and the pause every sender takes."""

    per_minute: float
    lowered: bool
    pause: float


class Pace:
    def __init__(self, ceiling: float, *, window: float = 60.0) -> None:
        if not 0 < ceiling < math.inf:
            raise ValueError("rate must be a positive number of requests per minute")
        self.ceiling = ceiling
        self.window = window
        self._settled = ceiling  #: the pace the last decrease chose
        self._lowered_at = -math.inf
        self._step = 0.0
        self._sent: collections.deque[float] = collections.deque()
        self._streak = 0
        self._successes = 0
        self._streak_pause = 0.0

    def per_minute(self, now: float) -> float:
        """The pace now: the settled one, climbing by a step for each quiet window since the last 429."""
        if self._settled >= self.ceiling or self._lowered_at == -math.inf:
            return self.ceiling
        quiet = now - self._lowered_at - self.window * QUIET
        if quiet <= 0:
            return self._settled
        return min(self.ceiling, self._settled + self._step * quiet / self.window)

    def sent(self, now: float) -> None:
        """A request went out (a send slot was used) at ``now``."""
        bisect.insort(self._sent, now)
        self._forget(now)

    def sent_late(self, slot: float, at: float) -> None:
        """The request of the slot at ``slot`` (or already said late at ``slot``) went out at ``at``."""
        if self.unsend(slot):
            bisect.insort(self._sent, at)

    def window_allows(self, per_minute: float) -> float:
        """The earliest time the next send keeps every window at ``per_minute`` or under. On an even
        grid with headroom this is never later than the grid's next slot; it holds a send back only
        where late sends came closer together than the grid."""
        most = max(1, math.floor(per_minute * self.window / 60.0 + 1e-9))
        if len(self._sent) < most:
            return -math.inf
        return self._sent[-most] + self.window

    def succeeded(self, now: float) -> None:
        """A request went through at ``now``: after `CALM` in a row, the next 429 starts a new streak."""
        self._successes += 1
        if self._successes >= CALM:
            self._streak = 0

    def rejected(self, now: float, sent_at: float, retry_after: float | None) -> Slowdown:
        """A 429 arrived at ``now`` for the request sent at ``sent_at``."""
        self._forget(now)
        pace = self.per_minute(now)
        if sent_at < self._lowered_at:  # on its way before the last decrease: nothing new
            return Slowdown(pace, False, 0.0)
        self._streak += 1
        self._successes = 0
        if self._streak == 1:  # a probe: hold no one back until the next answer says whether it was a stray
            self._streak_pause = 0.0
            return Slowdown(pace, False, 0.0)
        let_through = len(self._sent) * 60.0 / self.window * (1.0 - MARGIN)
        self._settled = max(FLOOR, pace * DEEPEST, min(pace * DECREASE, let_through))
        self._step = max(1.0, self._settled * INCREASE)
        self._lowered_at = now
        pause = max(retry_after or 0.0, self._drain(now), 60.0 / self._settled)
        if self._streak > 2 and self._streak_pause:
            pause = max(pause, self._streak_pause * 2)
        self._streak_pause = pause = min(pause, self.window)
        return Slowdown(self._settled, True, pause)

    def dump(self) -> dict[str, Any]:
        """What the runs of one key share (`schedule`), as JSON can hold it; the ceiling and window are
        theirs to give when loading."""
        return {"settled": self._settled, "lowered_at": None if self._lowered_at == -math.inf else self._lowered_at,
                "step": self._step, "sent": list(self._sent), "streak": self._streak,
                "successes": self._successes, "streak_pause": self._streak_pause}

    @classmethod
    def load(cls, state: dict[str, Any], ceiling: float, *, window: float = 60.0) -> Pace:
        pace = cls(ceiling, window=window)
        if state:
            lowered_at = state.get("lowered_at")
            pace._settled = float(state["settled"])
            pace._lowered_at = -math.inf if lowered_at is None else float(lowered_at)
            pace._step = float(state["step"])
            pace._sent.extend(float(t) for t in state["sent"])
            pace._streak, pace._successes = int(state["streak"]), int(state["successes"])
            pace._streak_pause = float(state["streak_pause"])
        return pace

    def unsend(self, at: float) -> bool:
        """The send slot at ``at`` went unused (its caller gave it up); False if it was not known."""
        try:
            self._sent.remove(at)
        except ValueError:
            return False
        return True

    @property
    def streak(self) -> int:
        """429s in the current streak: a success matters to the shared state only while it is above 0."""
        return self._streak

    def _drain(self, now: float) -> float:
        """Seconds until fewer of our sends than the new pace allows (less the margin) remain in the window."""
        allowed = math.floor(self._settled * (1.0 - MARGIN) * self.window / 60.0)
        excess = len(self._sent) - allowed  # this many must leave, and one more for the next send
        if excess < 0:
            return 0.0
        leaves = self._sent[min(excess, len(self._sent) - 1)] + self.window * (1.0 + SLACK)
        return max(0.0, leaves - now)

    def _forget(self, now: float) -> None:
        while self._sent and self._sent[0] <= now - self.window:
            self._sent.popleft()
