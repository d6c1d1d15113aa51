"""One key's send schedule, shared by every run that uses the key: slots on one evenly spaced grid,
one pause after a 429, one learned pace, and the runs taking part.

The state is plain data (`dump`/`load`), so a board (`boards`) can keep it in memory, in a file on
this host or in a Postgres row, and every transition here runs on the board's clock: this host's
for a file, the database server's for Postgres. Machines' clocks are never compared.

Runs may disagree on ``--rate``: the smallest one given by a run taking part is the ceiling for all
while they overlap. A run that stops, or dies, leaves; a dead run's last claimed slot simply passes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from .pace import Pace, Slowdown

#: State from further ahead than this many windows is from a clock that jumped (or a reboot): dropped.
HORIZON_WINDOWS = 3.0


@dataclass(slots=True)
class Member:
    """A run taking part in a key's schedule, as `status` shows it."""

    run: str
    pid: int
    host: str
    out: str
    rate: float
    window: float
    #: What the board checks to tell the run is still alive (a process start time, a database session).
    token: str = ""
    #: The board's time of the run's last claim.
    seen: float = 0.0

    def describe(self) -> str:
        writing = f", writing {self.out}" if self.out else ""
        return f"pid {self.pid} on {self.host}{writing}, --rate {self.rate:g}"


@dataclass(frozen=True, slots=True)
class Claim:
    """A send slot: at ``slot`` on the board's clock, claimed at ``now`` on it."""

    slot: float
    interval: float
    now: float
    per_minute: float
    #: The run whose --rate is the ceiling, when it is not the claimer's own.
    lowest: Member | None
    others: tuple[Member, ...]

    @property
    def wait(self) -> float:
        return max(0.0, self.slot - self.now)


class Schedule:
    def __init__(self, state: dict[str, Any] | None = None) -> None:
        state = state or {}
        self.next_slot = _time(state.get("next_slot"))
        self.paused_until = _time(state.get("paused_until"))
        self.members = {m["run"]: Member(**m) for m in state.get("members", [])}
        self._pace_state: dict[str, Any] = state.get("pace") or {}
        self._pace: Pace | None = None

    def dump(self) -> dict[str, Any]:
        return {"next_slot": _json_time(self.next_slot), "paused_until": _json_time(self.paused_until),
                "pace": self.pace.dump() if self._pace is not None else self._pace_state,
                "members": [asdict(m) for m in self.members.values()]}

    @property
    def ceiling(self) -> float:
        return min((m.rate for m in self.members.values()), default=60.0)

    @property
    def window(self) -> float:
        return max((m.window for m in self.members.values()), default=60.0)

    @property
    def pace(self) -> Pace:
        """The learned pace, under the ceiling and window of the runs taking part now."""
        if self._pace is None:
            self._pace = Pace.load(self._pace_state, self.ceiling, window=self.window)
        self._pace.ceiling, self._pace.window = self.ceiling, self.window
        return self._pace

    def join(self, member: Member, now: float) -> None:
        member.seen = now
        self.members[member.run] = member

    def leave(self, run: str) -> None:
        self.members.pop(run, None)

    def prune(self, alive: Any) -> list[Member]:
        """Drop the runs ``alive(member)`` says are gone; returns them."""
        gone = [m for m in self.members.values() if not alive(m)]
        for member in gone:
            del self.members[member.run]
        return gone

    def claim(self, run: str, now: float, headroom: float) -> Claim:
        """The next free slot on the grid for ``run``: one interval after the last one claimed, and
        not before the pause ends."""
        self._forget_the_future(now)
        member = self.members.get(run)
        if member is not None:
            member.seen = now
        pace = self.pace
        per_minute = pace.per_minute(now)
        interval = 60.0 / per_minute * (1.0 + headroom)
        slot = max(now, self.next_slot, self.paused_until, pace.window_allows(per_minute))
        self.next_slot = slot + interval
        pace.sent(slot)
        lowest = min(self.members.values(), key=lambda m: m.rate, default=None)
        if lowest is not None and (member is None or lowest.rate >= member.rate):
            lowest = None
        others = tuple(m for m in self.members.values() if m.run != run)
        return Claim(slot, interval, now, per_minute, lowest, others)

    def sent_late(self, slot: float, at: float) -> float:
        """The request of the slot at ``slot`` went out at ``at``: the log of sends holds the real time."""
        self.pace.sent_late(slot, at)
        return at

    def give_back(self, claim: Claim) -> None:
        """An unused slot: the next caller takes it if no later one was claimed since."""
        self.pace.unsend(claim.slot)
        if self.next_slot == claim.slot + claim.interval:
            self.next_slot = claim.slot

    def pause_until(self, until: float) -> None:
        """Hold every run back until ``until`` (a longer pause wins)."""
        self.paused_until = max(self.paused_until, until)

    def rejected(self, now: float, sent_at: float, retry_after: float | None) -> Slowdown:
        """A 429 seen by any run: the pace and the pause hold for every run of the key."""
        slowdown = self.pace.rejected(now, sent_at, retry_after)
        self.pause_until(now + slowdown.pause)
        return slowdown

    def succeeded(self, now: float) -> None:
        self.pace.succeeded(now)

    def _forget_the_future(self, now: float) -> None:
        """A slot or pause further ahead than any run could have set it: the clock went back (or the
        host rebooted, for a monotonic one). Keeping it would block every run until the clock catches up."""
        horizon = now + self.window * HORIZON_WINDOWS
        if self.next_slot > horizon or self.paused_until > horizon:
            self.next_slot = self.paused_until = -math.inf
            self._pace, self._pace_state = None, {}


def _time(value: Any) -> float:
    return -math.inf if value is None else float(value)


def _json_time(value: float) -> float | None:
    return None if value == -math.inf else value
