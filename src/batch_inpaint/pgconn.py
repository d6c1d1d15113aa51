"""What the two users of Postgres (the fleet's manifest, the shared limiter) do alike with a connection."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import anyio

from .redaction import scrub

#: One advisory lock for creating either's tables: two first runs on an empty database take turns.
SCHEMA_LOCK = 0x62692D6C696D


#: The longest a query goes on once its run is stopping; past it, the database is given up as gone.
SHIELD_SECONDS = 30.0


@contextmanager
def shielded(error: Callable[[BaseException], Exception]) -> Iterator[None]:
    """A query that a cancellation (a run stopping on a signal) waits for instead of cutting it short:
    psycopg closes a connection whose query was cancelled, and the manifest and the limiter each share
    one connection among their tasks, so one cancelled look would fail every later write (a worker
    stopped with SIGTERM could not give its items back). Raises ``error(TimeoutError)`` if the
    database gives no answer within `SHIELD_SECONDS`."""
    with anyio.CancelScope(shield=True, deadline=anyio.current_time() + SHIELD_SECONDS) as scope:
        yield
    if scope.cancelled_caught:
        raise error(TimeoutError(f"no answer from the database within {SHIELD_SECONDS:g} s"))


def is_postgres_url(value: str) -> bool:
    return value.startswith(("postgresql://", "postgres://"))


def failure(where: str, exc: BaseException, url: str) -> str:
    """A psycopg error as one line naming ``where``, the URL's password hidden."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return scrub(f"{where}: {reason}", url)


async def close_quietly(conn: Any) -> None:
    """Closing a connection the server may have dropped already: nothing left to tell."""
    if conn is None:
        return
    try:
        await conn.close()
    except Exception:
        pass
