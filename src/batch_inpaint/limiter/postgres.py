"""A key's schedule in Postgres, for runs on many hosts (``--limiter postgresql://...``).

One row per key, locked for each change (``SELECT ... FOR UPDATE``), on the database server's clock:
the hosts' own clocks may differ by seconds and are never compared. A run is taking part while its
database session is alive (``pg_stat_activity``), so a run killed with ``kill -9`` drops out as soon
as the server sees its connection close. Needs the ``postgres`` extra (psycopg 3).
"""

from __future__ import annotations

from typing import Any

from ..pgconn import SCHEMA_LOCK, close_quietly, failure, shielded
from ..redaction import redact_url
from .boards import BoardError, Change, T
from .schedule import Schedule

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS batch_inpaint_schema (
    component text PRIMARY KEY,
    version integer NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_inpaint_schedules (
    key_id text PRIMARY KEY,
    state jsonb NOT NULL,
    updated timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""


class PostgresBoard:
    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.key = key
        self.where = redact_url(url)
        self._conn: Any = None

    async def open(self) -> str:
        try:
            import psycopg
        except ImportError:
            raise BoardError("--limiter postgresql://... needs psycopg: pip install 'batch-inpaint[postgres]'") \
                from None
        try:
            self._conn = await psycopg.AsyncConnection.connect(self.url, connect_timeout=10,
                                                               application_name="batch-inpaint")
            async with self._conn.transaction():
                await self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                await self._conn.execute(_SCHEMA)
                cur = await self._conn.execute(
                    "SELECT version FROM batch_inpaint_schema WHERE component = 'limiter'")
                row = await cur.fetchone()
                if row is None:
                    await self._conn.execute("INSERT INTO batch_inpaint_schema VALUES ('limiter', %s)",
                                             (SCHEMA_VERSION,))
                elif row[0] > SCHEMA_VERSION:
                    raise BoardError(f"{self.where}: the limiter's tables are from a newer batch-inpaint "
                                     f"(schema {row[0]}, this one knows {SCHEMA_VERSION}): upgrade")
                cur = await self._conn.execute("SELECT pg_backend_pid()")
                (pid,) = await cur.fetchone()
        except psycopg.Error as exc:
            await self.aclose()
            raise self._error(exc) from None
        return str(pid)

    async def update(self, change: Change[T]) -> T:
        import psycopg
        from psycopg.types.json import Jsonb

        try:
            with shielded(self._error):
                async with self._conn.transaction():
                    state = await self._locked_state()
                    cur = await self._conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8,"
                                                   " ARRAY(SELECT pid FROM pg_stat_activity)")
                    now, pids = await cur.fetchone()
                    sessions = {str(pid) for pid in pids}
                    schedule = Schedule(state)
                    schedule.prune(lambda member: member.token in sessions)
                    result = change(schedule, now)
                    await self._conn.execute("UPDATE batch_inpaint_schedules SET state = %s,"
                                             " updated = clock_timestamp() WHERE key_id = %s",
                                             (Jsonb(schedule.dump()), self.key))
                return result
        except psycopg.Error as exc:
            raise self._error(exc) from None

    async def read(self) -> Schedule:
        import psycopg

        try:
            with shielded(self._error):
                cur = await self._conn.execute("SELECT state FROM batch_inpaint_schedules WHERE key_id = %s",
                                               (self.key,))
                row = await cur.fetchone()
                await self._conn.commit()
        except psycopg.Error as exc:
            raise self._error(exc) from None
        return Schedule(row[0] if row else None)

    async def everyone(self) -> list[Schedule]:
        """Every key's schedule with the runs alive now (for `status`)."""
        import psycopg

        try:
            with shielded(self._error):
                cur = await self._conn.execute("SELECT state FROM batch_inpaint_schedules")
                rows = await cur.fetchall()
                cur = await self._conn.execute("SELECT ARRAY(SELECT pid FROM pg_stat_activity)")
                (pids,) = await cur.fetchone()
                await self._conn.commit()
        except psycopg.Error as exc:
            raise self._error(exc) from None
        sessions = {str(pid) for pid in pids}
        schedules = [Schedule(state) for (state,) in rows]
        for schedule in schedules:
            schedule.prune(lambda member: member.token in sessions)
        return schedules

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        await close_quietly(conn)

    async def _locked_state(self) -> Any:
        for _ in range(2):
            cur = await self._conn.execute(
                "SELECT state FROM batch_inpaint_schedules WHERE key_id = %s FOR UPDATE", (self.key,))
            row = await cur.fetchone()
            if row is not None:
                return row[0]
            await self._conn.execute("INSERT INTO batch_inpaint_schedules (key_id, state) VALUES (%s, '{}') "
                                     "ON CONFLICT DO NOTHING", (self.key,))
        raise BoardError(f"{self.where}: the schedule row could not be created")

    def _error(self, exc: BaseException) -> BoardError:
        return BoardError(failure(self.where, exc, self.url))
