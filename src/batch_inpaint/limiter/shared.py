"""Pacing every run of one key through its schedule on a board: send slots on one evenly spaced grid at
the pace `pace.Pace` allows, and one pause after a 429 that holds every run.

The provider does not say whether its per-minute window is fixed, sliding or a bucket. At most one
request per interval, with a small headroom, keeps every 60-second window at or under the limit under
all three readings, so slots are one interval apart from the first (a bucket that starts full, such as
``AsyncLimiter(60, 60)``, lets about twice the limit through in the first minute).

Slots are claimed on a grid (virtual scheduling): a sender woken a little late does not push the next
slot back. aiolimiter's leaky bucket with a capacity of one was measured here and does push it back:
every wake-up's lateness is lost, 0.970 of the limit at 1,200 a minute against 0.989 for the grid
(benchmarks/RESULTS.md). A larger bucket would catch up, but would let 61 requests into some minute at 60.

A request that leaves late (a stalled host, a slow board or disk) comes closer to the next ones than
the grid; past what the headroom leaves for it, it says so (`sent_late`), the key's log of sends holds
its real time, and no slot is claimed where it would put more than the limit into a window. A stall
that delays every run alike costs nothing more than its own length.

A run holds at most one claimed slot at a time, so a run killed with ``kill -9`` wastes one slot of
the others' and blocks nothing. If the board fails mid-run (a full disk, a lost database), the run
goes on alone at its share of the rate, and says so once.
"""

from __future__ import annotations

import math
import os
import uuid

import anyio

from .base import Slot
from .boards import HOST, Board, BoardError, Change, MemoryBoard, T
from .pace import Slowdown
from .schedule import Claim, Member, Schedule

#: Fraction of the interval added as headroom, so clock jitter between us and the server never puts
#: limit+1 requests into one of its windows.
DEFAULT_HEADROOM = 0.01
#: ... and at least this much over a whole window, for the lateness no one reports: a request that
#: leaves this process later than half of it says so (`sent_late`), and the sends a window later wait
#: as long; the other half is for the way to the server. Measured from slot to arrival with three runs,
#: Postgres and the emulator on 2 cores: 15-40 ms at the 99th percentile, 70 ms at most, and stalls of
#: the whole host of 0.1-1 s, which delay every run alike. At 0.2 s, one request in a few thousand
#: still arrived past the slack on a busy host (51 in a 10 s window of 50). Only windows under 40 s
#: (the tests' and benchmarks') feel this: a minute's window keeps its 1% (0.6 s).
JITTER_SECONDS = 0.4


#: At most this long before its slot a sender reads whether a pause began (a pause begun after the
#: read is missed by that one request).
LEAD_SECONDS = 0.5


class SharedLimiter:
    """``rate`` requests a minute at most, evenly spaced, for every run of the key on ``board``
    (the smallest rate of the runs taking part wins); less while the server's limit looks lower.
    ``window`` is the server's counting window (a minute; tests shorten it with the emulator's);
    ``out`` names the run in `status`."""

    def __init__(self, board: Board, rate: float, *, window: float = 60.0, headroom: float | None = None,
                 out: str = "") -> None:
        if not 0 < rate < math.inf:
            raise ValueError("rate must be a positive number of requests per minute")
        self.board = board
        self.member = Member(uuid.uuid4().hex[:12], os.getpid(), HOST, out, rate, window)
        self.headroom = max(DEFAULT_HEADROOM, JITTER_SECONDS / window) if headroom is None else headroom
        #: How late after its slot a request may go unsaid: half of the slack the headroom leaves in a window.
        self.tolerance = self.headroom * window / 2
        self.late_sends = 0
        self._read_seconds = 0.0  # how long a read of the board takes, recently at most
        self._turn = anyio.Lock()  # one claimed slot per run at a time
        self._board_lock = anyio.Lock()
        self._started = False
        self._offset = 0.0  # the board's clock minus the event loop's
        self._per_minute = rate
        self._paused_until = -math.inf
        self._streak = 0
        self._runs_seen = 1
        self._news: list[str] = []
        self._said: set[str] = set()

    async def start(self) -> None:
        """Open the board and join the key's schedule; raises BoardError if the board cannot be used."""
        if not self._started:
            self._started = True
            self.member.token = await self.board.open()
            await self._update(lambda s, now: s.join(self.member, now))

    @property
    def per_minute(self) -> float:
        return self._per_minute

    @property
    def paused_until(self) -> float:
        """The end of the last pause this run set (event-loop time)."""
        return self._paused_until

    async def acquire(self) -> Slot:
        async with self._turn:
            while True:
                claim = await self._update(lambda s, now: s.claim(self.member.run, now, self.headroom))
                self._offset = claim.now - anyio.current_time()
                self._per_minute = claim.per_minute
                self._tell(claim)
                if claim.wait > 0:
                    try:
                        paused = await self._wait_for(claim)
                    except BaseException:
                        with anyio.CancelScope(shield=True):
                            await self._update(lambda s, now: s.give_back(claim))
                        raise
                    if paused:
                        # A 429 (this run's or another's) began a pause while we waited: claim a slot after it.
                        await self._update(lambda s, now: s.give_back(claim))
                        continue
                slot = Slot(claim.slot - self._offset + self.tolerance, claim.slot)
                if slot.late():  # woken late (a stalled host, a slow board): the log holds when it went
                    slot = Slot(slot.deadline, await self._sent_late(slot))
                return slot

    async def sent_late(self, slot: Slot) -> None:
        await self._sent_late(slot)

    async def _sent_late(self, slot: Slot) -> float:
        """The time the log of sends now holds for ``slot``'s request."""
        self.late_sends += 1
        return await self._update(lambda s, now: s.sent_late(slot.at, now))

    async def _wait_for(self, claim: Claim) -> bool:
        """Sleep until the claimed slot; True if a pause began meanwhile. The pause is read a little
        ahead of the slot, so the board's round trip is not paid after it."""
        lead = min(2.0 * self._read_seconds, LEAD_SECONDS)
        await anyio.sleep(max(0.0, claim.slot - lead - self._board_time()))
        started = anyio.current_time()
        paused_until = (await self._read()).paused_until
        took = anyio.current_time() - started
        self._read_seconds = max(took, self._read_seconds * 0.9)
        if paused_until > claim.slot:
            return True
        rest = claim.slot - self._board_time()
        if rest > 0:  # no needless checkpoint: other tasks would run first, and the request leave later
            await anyio.sleep(rest)
        return False

    def _board_time(self) -> float:
        return anyio.current_time() + self._offset

    async def pause(self, seconds: float) -> None:
        """Hold every run of the key back for ``seconds`` from now (a longer pause wins)."""
        await self._update(lambda s, now: s.pause_until(now + max(0.0, seconds)))
        self._paused_until = max(self._paused_until, anyio.current_time() + max(0.0, seconds))

    async def rate_limited(self, retry_after: float | None, sent_at: float) -> Slowdown:
        sent = sent_at + self._offset
        slowdown = await self._update(lambda s, now: s.rejected(now, sent, retry_after))
        self._per_minute = slowdown.per_minute
        self._paused_until = max(self._paused_until, anyio.current_time() + slowdown.pause)
        return slowdown

    async def succeeded(self) -> None:
        if self._streak:  # otherwise a success changes nothing shared: no write for it
            await self._update(lambda s, now: s.succeeded(now))

    def news(self) -> list[str]:
        news, self._news = self._news, []
        return news

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            if self._started:
                try:
                    await self._update(lambda s, now: s.leave(self.member.run))
                except BoardError:
                    pass
            await self.board.aclose()

    async def _update(self, change: Change[T]) -> T:
        seen: list[tuple[int, int]] = []

        def observed(schedule: Schedule, now: float) -> T:
            result = change(schedule, now)
            seen.append((schedule.pace.streak, max(1, len(schedule.members))))
            return result

        await self.start()
        async with self._board_lock:
            try:
                result = await self.board.update(observed)
            except BoardError as exc:
                seen.clear()  # what a failed step saw was never stored
                await self._go_alone(exc)
                result = await self.board.update(observed)
        self._streak, self._runs_seen = seen[-1]
        return result

    async def _read(self) -> Schedule:
        async with self._board_lock:
            try:
                return await self.board.read()
            except BoardError as exc:
                await self._go_alone(exc)
                return await self.board.read()

    async def _go_alone(self, exc: BoardError) -> None:
        """The board failed mid-run: pace this run alone at its share of the key's rate from now on."""
        share = max(1.0, self._per_minute / self._runs_seen)
        self._say("alone", f"the rate limit of this key can no longer be shared with other runs ({exc}): "
                           f"pacing this run alone at its share, {share:.0f}/min")
        board = MemoryBoard()
        try:
            await self.board.aclose()
        except BoardError:
            pass
        self.board = board
        self.member.rate = share
        board.schedule.join(self.member, anyio.current_time())

    def _tell(self, claim: Claim) -> None:
        if claim.others:
            shown = "; ".join(m.describe() for m in claim.others[:3])
            more = f" and {len(claim.others) - 3} more" if len(claim.others) > 3 else ""
            self._say("sharing", f"sharing this key's rate limit with {len(claim.others)} other "
                                 f"run{'s' if len(claim.others) > 1 else ''} ({shown}{more})")
        if claim.lowest is not None:
            self._say("lowest", f"another run of this key asks for --rate {claim.lowest.rate:g} "
                                f"({claim.lowest.describe()}): every run of this key paces at "
                                f"{claim.lowest.rate:g}/min at most while they overlap")

    def _say(self, what: str, text: str) -> None:
        if what not in self._said:
            self._said.add(what)
            self._news.append(text)

