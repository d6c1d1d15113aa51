"""Where a key's schedule (`schedule.Schedule`) lives: in this process, or in a small file that every
run on this host reads and writes under a lock. Postgres, for runs on many hosts, is `postgres.py`.

A board changes the schedule in one step (`update`): load it, drop the runs that are gone, apply the
change on the board's clock, store it. Nothing it holds outlives a run killed with ``kill -9``: the
file lock is the kernel's and goes with the process, the state is replaced whole (a rename), and a
dead run is dropped as soon as another run looks.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable, Protocol, TypeVar

import anyio

from .schedule import Member, Schedule

T = TypeVar("T")
Change = Callable[[Schedule, float], T]
HOST = socket.gethostname()
#: A run on another host that shares this folder (a network home) is alive while it claimed a slot
#: this recently; its process cannot be looked at from here.
FOREIGN_SECONDS = 120.0


class BoardError(Exception):
    """The board cannot be read or written; the message names where, never a password."""


class Board(Protocol):
    #: Where the schedule is, for messages (a URL's password removed).
    where: str

    async def open(self) -> str:
        """Make the board ready; returns this process's liveness token (`Member.token`)."""

    async def update(self, change: Change[T]) -> T:
        """Apply ``change(schedule, now)`` to the key's schedule as one step, on the board's clock."""

    async def read(self) -> Schedule:
        """The schedule as it is now, without changing it."""

    async def aclose(self) -> None: ...


def key_id(api_key: str, endpoint: str) -> str:
    """Names a key's schedule: a hash of the key and the endpoint, never the key itself."""
    text = f"batch-inpaint limiter\0{api_key}\0{endpoint.rstrip('/').lower()}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class MemoryBoard:
    """One process: the schedule in memory, on the event loop's clock (fake in tests)."""

    where = "this process"

    def __init__(self) -> None:
        self.schedule = Schedule()

    async def open(self) -> str:
        return ""

    async def update(self, change: Change[T]) -> T:
        return change(self.schedule, anyio.current_time())

    async def read(self) -> Schedule:
        return self.schedule

    async def aclose(self) -> None:
        return None


class FileBoard:
    """Every run on this host: ``<dir>/<key id>.json``, written whole and renamed into place under an
    exclusive lock on ``<key id>.lock``, on this host's wall clock (the same in every process)."""

    def __init__(self, folder: Path, key: str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = folder / f"{key}.json"
        self.where = str(self.path)
        self._lock_path = folder / f"{key}.lock"
        self._clock = clock
        self._fd: int | None = None

    async def open(self) -> str:
        import importlib.util

        if importlib.util.find_spec("fcntl") is None:  # POSIX only: elsewhere the run paces alone
            raise BoardError("file locks are not available on this system")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            await self.update(lambda schedule, now: None)  # a folder that can be read but not written fails here
        except OSError as exc:
            raise BoardError(f"{self.path.parent}: {exc.strerror or exc}") from None
        return process_token(os.getpid()) or ""

    async def update(self, change: Change[T]) -> T:
        import fcntl

        assert self._fd is not None, "open() first"
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:  # held for a few microseconds by another run: never block the loop
                await anyio.sleep(0.001)
        try:
            now = self._clock()
            schedule = self._load()
            schedule.prune(lambda member: alive_on_host(member, now))
            result = change(schedule, now)
            self._save(schedule)
            return result
        except OSError as exc:
            raise BoardError(f"{self.path}: {exc.strerror or exc}") from None
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    async def read(self) -> Schedule:
        try:
            return self._load()
        except OSError as exc:
            raise BoardError(f"{self.path}: {exc.strerror or exc}") from None

    async def aclose(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _load(self) -> Schedule:
        return read_schedule(self.path)

    def _save(self, schedule: Schedule) -> None:
        temp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(schedule.dump(), separators=(",", ":")), encoding="utf-8")
        os.replace(temp, self.path)


def everyone_on_host(folder: Path) -> list[Schedule]:
    """Every key's schedule in ``folder`` with the runs alive now (for `status`); unreadable ones skipped."""
    schedules = []
    now = time.time()
    for path in sorted(folder.glob("*.json")):
        try:
            schedule = read_schedule(path)
        except OSError:
            continue
        schedule.prune(lambda member: alive_on_host(member, now))
        schedules.append(schedule)
    return schedules


def read_schedule(path: Path) -> Schedule:
    """The schedule in ``path``; a fresh one if there is none, or what is there is not one we can read
    (another version's, say): starting afresh costs at most one slot's spacing."""
    try:
        state = json.loads(path.read_bytes())
        return Schedule(state if isinstance(state, dict) else None)
    except FileNotFoundError:
        return Schedule()
    except (ValueError, TypeError, KeyError):
        return Schedule()


def alive_on_host(member: Member, now: float) -> bool:
    if member.host != HOST:
        return now - member.seen < FOREIGN_SECONDS
    return process_token(member.pid) == member.token


def process_token(pid: int) -> str | None:
    """A process's start time (Linux), so a pid reused by another process does not pass for the run;
    None when there is no such process. Elsewhere, "-" for any live process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
        return _exists(pid)
    except OSError:
        return _exists(pid)
    return stat.rsplit(b")", 1)[1].split()[19].decode()


def _exists(pid: int) -> str | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return "-"

