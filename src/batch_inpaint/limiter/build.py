"""The limiter a run's settings ask for (``--limiter host|process|postgresql://...``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..locations import limits_dir
from ..settings import Settings
from .base import Limiter, Unlimited
from .boards import Board, BoardError, FileBoard, everyone_on_host, key_id
from ..pgconn import is_postgres_url
from .postgres import PostgresBoard
from .process import ProcessLimiter
from .schedule import Schedule
from .shared import SharedLimiter


async def open_limiter(settings: Settings, *, api_key: str, endpoint: str) -> Limiter:
    """Join the schedule of the key at ``endpoint``. A host folder that cannot be used falls back to
    pacing this run alone (said once); a Postgres one that cannot is a ConfigError, before any request."""
    if settings.engine == "local":
        return Unlimited()
    out = str(settings.out_dir.resolve()) if settings.out_dir is not None else ""
    sharing = settings.limit_sharing
    if sharing == "process":
        return ProcessLimiter(settings.rate, window=settings.rate_window, out=out)
    key = key_id(api_key, endpoint)
    board: Board = (PostgresBoard(sharing, key) if is_postgres_url(sharing)
                    else FileBoard(limits_dir(), key))
    limiter = SharedLimiter(board, settings.rate, window=settings.rate_window, out=out)
    try:
        await limiter.start()
    except BoardError as exc:
        await board.aclose()
        if sharing != "host":
            raise ConfigError(f"cannot share the key's rate limit through {exc}") from None
        alone = ProcessLimiter(settings.rate, window=settings.rate_window, out=out)
        alone._say("alone", f"the rate limit of this key cannot be shared with other runs on this host ({exc}): "
                            "pacing this run alone; use --limiter process to say so and not be warned")
        return alone
    return limiter


async def runs_sharing(out_dir: Path, limiter: str = "host") -> list[Schedule]:
    """The schedules a run writing to ``out_dir`` takes part in now, with every run in each (`status`)."""
    out = str(out_dir.resolve())
    if limiter == "process":
        return []
    if is_postgres_url(limiter):
        board = PostgresBoard(limiter, "")
        try:
            await board.open()
            schedules = await board.everyone()
        except BoardError as exc:
            raise ConfigError(f"cannot read the shared rate limits: {exc}") from None
        finally:
            await board.aclose()
    else:
        schedules = everyone_on_host(limits_dir())
    return [s for s in schedules if any(m.out == out for m in s.members.values())]
