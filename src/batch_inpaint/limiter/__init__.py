"""Limiters: who may send when. The rate limit belongs to the key, so every run of one key shares one
schedule (`schedule.Schedule`) on a board: a file on this host (`boards.FileBoard`), a Postgres row
for many hosts (`postgres.PostgresBoard`), or this process alone (`ProcessLimiter`). `Unlimited` does
not pace at all."""

from .base import Limiter, Slot, Unlimited
from .boards import Board, BoardError, FileBoard, MemoryBoard, key_id
from .pace import Pace, Slowdown
from .process import ProcessLimiter
from .schedule import Member, Schedule
from .shared import SharedLimiter

__all__ = ["Board", "BoardError", "FileBoard", "Limiter", "Member", "MemoryBoard", "Pace", "ProcessLimiter",
           "Schedule", "SharedLimiter", "Slot", "Slowdown", "Unlimited", "key_id"]
