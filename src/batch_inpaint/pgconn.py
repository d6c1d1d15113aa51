"""What the two users of Postgres (the fleet's manifest, the shared limiter) do alike with a connection."""

from __future__ import annotations

from typing import Any

from .redaction import scrub

#: One advisory lock for creating either's tables: two first runs on an empty database take turns.
SCHEMA_LOCK = 0x62692D6C696D


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
