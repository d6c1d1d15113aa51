"""The Postgres store: one job's manifest shared by every worker of a fleet (``--manifest postgresql://...``).

Each job's rows carry its name, so one database holds many jobs. Times that are compared across
workers (when an item was settled, when a lease runs out) are the database server's clock: the
hosts' own clocks may differ by seconds. Work is shared with leases (`PostgresLeases`). Needs the
``postgres`` extra (psycopg 3).
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, AsyncIterator, Mapping, Sequence

import anyio

from ..errors import ConfigError, ManifestError, NoManifest
from ..hashing import XXH128
from ..pairing import FileSig
from ..pgconn import SCHEMA_LOCK, close_quietly, failure, shielded
from ..redaction import redact_url
from .rows import RUN_COLUMNS, decimal, fingerprint_columns, item_record, output_columns, run_record, sig_columns
from .base import (
    BRIEF_COLUMNS, PROBLEMS, AnswerSource, Brief, Fingerprint, Flagged, ItemProblem, ItemRecord, ItemRow,
    LeaseLost, Leases, OutputRecord, Outlook, Problem, RunEnd, RunRecord, SeenItem, Worker,
)

SCHEMA_VERSION = 2
_NOW = "extract(epoch FROM clock_timestamp())"
_MIGRATIONS = {
    1: """
    CREATE TABLE batch_inpaint_jobs (
        job text PRIMARY KEY, content_hash text NOT NULL, created double precision NOT NULL
    );
    CREATE TABLE batch_inpaint_items (
        job text NOT NULL, key text NOT NULL,
        image_path text, mask_path text,
        image_size bigint, image_mtime_ns bigint, image_hash text,
        mask_size bigint, mask_mtime_ns bigint, mask_hash text,
        settings_hash text, content_key text,
        status text NOT NULL DEFAULT 'pending',
        attempts integer NOT NULL DEFAULT 0, sends integer NOT NULL DEFAULT 0,
        possibly_charged integer NOT NULL DEFAULT 0,
        error_status integer, error text, fixes text, warnings text,
        output_path text, output_hash text, output_size bigint,
        credits text, remaining_credits text,
        first_seen double precision, started_at double precision, finished_at double precision,
        seconds double precision, run_id bigint, failed_runs integer NOT NULL DEFAULT 0,
        request_hash text, answer text, flags text,
        lease_run bigint, lease_until double precision,
        PRIMARY KEY (job, key)
    );
    CREATE INDEX batch_inpaint_items_status ON batch_inpaint_items (job, status);
    CREATE INDEX batch_inpaint_items_request ON batch_inpaint_items (job, request_hash);
    CREATE TABLE batch_inpaint_runs (
        id bigserial PRIMARY KEY, job text NOT NULL,
        started_at double precision NOT NULL, ended_at double precision, pid integer, host text,
        backend_pid integer, settings text, counts text, credits_used text, remaining_credits text,
        requests integer, possibly_charged_twice integer, exit_code integer, retries integer, rate_limited integer
    );
    CREATE INDEX batch_inpaint_runs_job ON batch_inpaint_runs (job);
    """,
    # the output folder the job writes to, by its mark's token (`jobfolder`)
    2: "ALTER TABLE batch_inpaint_jobs ADD COLUMN folder text",
}
_ROW_COLUMNS = ", ".join(ItemRow._fields)
_ITEM_COLUMNS = ", ".join(ItemRecord.__dataclass_fields__)
#: Settling an item: only by the run that holds its lease; or, when no one does, if no one has settled it
#: yet (the store used without claims, as the contract suite uses every store).
_HELD = " AND (lease_run=%(_held_by)s OR lease_run IS NULL AND status NOT IN ('done', 'empty_mask'))"
#: A lease is renewed this many times within its length, so one late renewal never loses it.
RENEWALS_PER_LEASE = 3


class PostgresStore:
    """Open with `PostgresStore.open`. One connection; one verb at a time on it."""

    def __init__(self, url: str, job: str, *, lease_seconds: float = 60.0) -> None:
        self.url = url
        self.job = job
        self.content_hash = XXH128
        self._conn: Any = None
        self._lock = anyio.Lock()
        self._run: int | None = None
        self.leases: Leases | None = PostgresLeases(self, lease_seconds)

    @classmethod
    async def open(cls, url: str, job: str, *, lease_seconds: float = 60.0, create: bool = True) -> "PostgresStore":
        """``create=False`` only reads a job that exists (for `status` and `export`)."""
        store = cls(url, job, lease_seconds=lease_seconds)
        try:
            import psycopg
        except ImportError:
            raise ConfigError("a postgresql:// manifest needs psycopg: pip install 'batch-inpaint[postgres]'") \
                from None
        try:
            store._conn = await psycopg.AsyncConnection.connect(url, connect_timeout=10, autocommit=True,
                                                                application_name="batch-inpaint")
            await store._migrate(create)
        except psycopg.Error as exc:
            await store.aclose()
            raise store._error(exc) from None
        except BaseException:
            await store.aclose()
            raise
        return store

    @property
    def location(self) -> str:
        return f"{redact_url(self.url)} job {self.job}"

    def _error(self, exc: BaseException) -> ManifestError:
        return ManifestError(failure(self.location, exc, self.url))

    async def _migrate(self, create: bool) -> None:
        """Bring the tables up to date (``create``), or only check them: reading writes nothing."""
        async with self._conn.transaction():
            version = 0
            cur = await self._conn.execute("SELECT to_regclass('batch_inpaint_schema') IS NOT NULL")
            if (await cur.fetchone())[0]:
                cur = await self._conn.execute("SELECT version FROM batch_inpaint_schema WHERE component='manifest'")
                row = await cur.fetchone()
                version = 0 if row is None else int(row[0])
            if version > SCHEMA_VERSION:
                raise ManifestError(f"{self.location}: the manifest's tables are from a newer batch-inpaint "
                                    f"(schema {version}, this one knows {SCHEMA_VERSION}): upgrade")
            if not create:
                if version < SCHEMA_VERSION:
                    raise NoManifest(f"{self.location}: no manifest in this database (has a run used it?)")
            else:
                await self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                await self._conn.execute("CREATE TABLE IF NOT EXISTS batch_inpaint_schema"
                                         " (component text PRIMARY KEY, version integer NOT NULL)")
                cur = await self._conn.execute("SELECT version FROM batch_inpaint_schema WHERE component='manifest'")
                row = await cur.fetchone()
                version = 0 if row is None else int(row[0])
            for target in range(version + 1, SCHEMA_VERSION + 1):
                await self._conn.execute(_MIGRATIONS[target])
                await self._conn.execute("INSERT INTO batch_inpaint_schema VALUES ('manifest', %s) ON CONFLICT"
                                         " (component) DO UPDATE SET version = excluded.version", (target,))
            if create:
                await self._conn.execute(f"INSERT INTO batch_inpaint_jobs VALUES (%s, %s, {_NOW})"
                                         " ON CONFLICT (job) DO NOTHING", (self.job, XXH128))
            cur = await self._conn.execute("SELECT content_hash FROM batch_inpaint_jobs WHERE job = %s", (self.job,))
            row = await cur.fetchone()
            if row is None:
                raise NoManifest(f"{self.location}: no such job in this manifest (has a run used it?)")
            self.content_hash = row[0]

    async def check_folder(self, token: str) -> None:
        """The output folder this worker writes to, by its mark's token (`jobfolder.JobMark`): the job keeps
        the first it is given and refuses a worker with any other."""
        (folder,) = await self._q("UPDATE batch_inpaint_jobs SET folder=COALESCE(folder, %s) WHERE job=%s"
                                  " RETURNING folder", (token, self.job), fetch="one")
        if folder != token:
            raise ConfigError(f"job {self.job!r} writes to another output folder than this worker's: every worker "
                              "of a job must write to the one shared folder (a shared volume, the same on every "
                              "host), and this one's is a folder of its own (nothing was sent)")

    async def _q(self, sql: str, params: Any = None, *, fetch: str = "") -> Any:
        """One statement, under the store's lock: its rows (``fetch``), or how many it changed."""
        import psycopg

        async with self._lock:
            try:
                with shielded(self._error):
                    cur = await self._conn.execute(sql, params)
                    if fetch == "one":
                        return await cur.fetchone()
                    if fetch == "all":
                        return await cur.fetchall()
                    return cur.rowcount
            except psycopg.Error as exc:
                raise self._error(exc) from None

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[Any]:
        """One transaction, under the store's lock."""
        import psycopg

        async with self._lock:
            try:
                with shielded(self._error):
                    async with self._conn.transaction():
                        yield self._conn
            except psycopg.Error as exc:
                raise self._error(exc) from None

    async def _many(self, sql: str, rows: Sequence[Any]) -> None:
        async with self._tx() as conn:
            async with conn.cursor() as cur:
                await cur.executemany(sql, rows)

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        await close_quietly(conn)

    # --- runs ---------------------------------------------------------------------------------

    async def start_run(self, settings: Mapping[str, Any], pid: int) -> int:
        row = await self._q(
            f"INSERT INTO batch_inpaint_runs (job, started_at, pid, host, backend_pid, settings)"
            f" VALUES (%s, {_NOW}, %s, %s, pg_backend_pid(), %s) RETURNING id",
            (self.job, pid, socket.gethostname(), json.dumps(settings, default=str, sort_keys=True)), fetch="one")
        self._run = int(row[0])
        return self._run

    async def end_run(self, run_id: int, end: RunEnd) -> None:
        await self._q(
            f"UPDATE batch_inpaint_runs SET ended_at={_NOW}, counts=%s, credits_used=%s, remaining_credits=%s,"
            " requests=%s, possibly_charged_twice=%s, exit_code=%s, retries=%s, rate_limited=%s WHERE id=%s",
            (json.dumps(dict(end.counts), sort_keys=True), str(end.credits_used),
             None if end.remaining_credits is None else str(end.remaining_credits), end.requests,
             end.possibly_charged_twice, int(end.exit_code), end.retries, end.rate_limited, run_id))
        await self._q("UPDATE batch_inpaint_items SET lease_run=NULL, lease_until=NULL WHERE job=%s AND lease_run=%s",
                      (self.job, run_id))

    async def runs(self) -> list[RunRecord]:
        rows = await self._q(f"SELECT {RUN_COLUMNS} FROM batch_inpaint_runs WHERE job=%s ORDER BY id", (self.job,),
                             fetch="all")
        return [run_record(r) for r in rows]

    # --- items: the walk and the decisions ------------------------------------------------------

    async def briefs(self, keys: Sequence[str]) -> dict[str, Brief]:
        rows = await self._q(f"SELECT key, {', '.join(BRIEF_COLUMNS)} FROM batch_inpaint_items"
                             " WHERE job=%s AND key = ANY(%s)", (self.job, list(keys)), fetch="all")
        return {row[0]: tuple(row[1:]) for row in rows}

    async def lookup(self, keys: Sequence[str]) -> dict[str, ItemRow]:
        rows = await self._q(f"SELECT {_ROW_COLUMNS} FROM batch_inpaint_items WHERE job=%s AND key = ANY(%s)",
                             (self.job, list(keys)), fetch="all")
        return {row[0]: ItemRow(*row) for row in rows}

    async def record_seen(self, items: Sequence[SeenItem]) -> None:
        """As every store does; and an item settled since this run started (by another worker, or by
        this one while a later walk was reading) keeps what was recorded: the walk read the item before,
        so its decision is older."""
        kept = ("batch_inpaint_items.status='in_flight' OR batch_inpaint_items.finished_at >"
                " (SELECT started_at FROM batch_inpaint_runs WHERE id=%(run)s)")
        await self._many(
            "INSERT INTO batch_inpaint_items (job, key, image_path, mask_path, image_size, image_mtime_ns,"
            " mask_size, mask_mtime_ns, status, error, first_seen) VALUES (%(job)s, %(key)s, %(image_path)s,"
            " %(mask_path)s, %(image_size)s, %(image_mtime_ns)s, %(mask_size)s, %(mask_mtime_ns)s, %(status)s,"
            f" %(error)s, {_NOW}) ON CONFLICT (job, key) DO UPDATE SET image_path=excluded.image_path,"
            " mask_path=excluded.mask_path, image_size=excluded.image_size, image_mtime_ns=excluded.image_mtime_ns,"
            " mask_size=excluded.mask_size, mask_mtime_ns=excluded.mask_mtime_ns,"
            f" status=CASE WHEN {kept} THEN batch_inpaint_items.status ELSE excluded.status END,"
            f" error=CASE WHEN {kept} THEN batch_inpaint_items.error ELSE excluded.error END",
            [dict(job=self.job, key=i.key, image_path=i.image_path, mask_path=i.mask_path,
                  image_size=sig_columns(i.image_sig)[0], image_mtime_ns=sig_columns(i.image_sig)[1],
                  mask_size=sig_columns(i.mask_sig)[0], mask_mtime_ns=sig_columns(i.mask_sig)[1], status=i.status, error=i.error,
                  run=self._run) for i in items])

    async def refresh_signatures(self, key: str, image_sig: FileSig, mask_sig: FileSig | None) -> None:
        await self._set(key, image_size=image_sig.size, image_mtime_ns=image_sig.mtime_ns,
                        mask_size=sig_columns(mask_sig)[0], mask_mtime_ns=sig_columns(mask_sig)[1])

    # --- items: sending -----------------------------------------------------------------------

    async def mark_in_flight(self, key: str, run_id: int, fingerprint: Fingerprint | None) -> bool:
        """Only while this run holds the item's lease (`PostgresLeases.claim`), at every attempt: a worker
        paused past its lease sends nothing for an item another worker took on, done or gave back."""
        async with self._tx() as conn:
            cur = await conn.execute("SELECT status, run_id, lease_run FROM batch_inpaint_items WHERE job=%s"
                                     " AND key=%s FOR UPDATE", (self.job, key))
            row = await cur.fetchone()
            if row is None or row[2] != run_id:
                raise LeaseLost(key)
            resent = fingerprint is not None and row[0] == "in_flight" and row[1] != run_id
            fields = fingerprint_columns(fingerprint) if fingerprint is not None else {}
            columns = "".join(f", {name}=%({name})s" for name in fields)
            await conn.execute(
                "UPDATE batch_inpaint_items SET status='in_flight', attempts=attempts+1, sends=sends+1,"
                f" possibly_charged=possibly_charged+%(_resent)s, started_at=COALESCE(started_at, {_NOW}),"
                f" run_id=%(_run)s{columns} WHERE job=%(_job)s AND key=%(_key)s",
                dict(fields, _resent=1 if resent else 0, _run=run_id, _job=self.job, _key=key))
            return resent

    async def note_attempt_failure(self, key: str, *, error_status: int | None, error: str, possibly_charged: bool) -> None:
        await self._q("UPDATE batch_inpaint_items SET error_status=%s, error=%s, possibly_charged=possibly_charged+%s"
                      " WHERE job=%s AND key=%s", (error_status, error, 1 if possibly_charged else 0, self.job, key))

    async def record_done(self, key: str, run_id: int, *, output: OutputRecord, credits: Decimal,
                          remaining: Decimal | None, seconds: float | None, fingerprint: Fingerprint | None,
                          answer: str | None = None) -> None:
        """Only while this run holds the item's lease: a worker that lost it (paused past its lease, say)
        records nothing over the worker that took the item on (`LeaseLost`)."""
        fields = fingerprint_columns(fingerprint) if fingerprint is not None else {}
        changed = await self._set(
            key, _held_by=run_id, status="done", error=None, error_status=None, credits=str(credits), run_id=run_id,
            failed_runs=0, answer=answer, flags=None, remaining_credits=None if remaining is None else str(remaining),
            seconds=seconds, lease_run=None, lease_until=None, **output_columns(output), **fields)
        if not changed:
            raise LeaseLost(key)

    async def record_flags(self, key: str, flags: tuple[str, ...]) -> None:
        await self._q("UPDATE batch_inpaint_items SET flags=%s WHERE job=%s AND key=%s AND status='done'",
                      (json.dumps(list(flags)) if flags else None, self.job, key))

    async def record_empty_mask(self, key: str, fingerprint: Fingerprint, output: OutputRecord | None) -> None:
        await self._set(key, _held_by=self._run, status="empty_mask", error="mask is empty", flags=None,
                        lease_run=None, lease_until=None, **fingerprint_columns(fingerprint),
                        **(output_columns(output) if output is not None else {}))

    async def record_failure(self, key: str, *, status: Problem, error: str, error_status: int | None,
                             settings_hash: str, transient: bool = False) -> None:
        await self._q(
            f"UPDATE batch_inpaint_items SET status=%(status)s, error=%(error)s, error_status=%(error_status)s,"
            f" settings_hash=%(settings_hash)s, finished_at={_NOW}, flags=NULL, lease_run=NULL, lease_until=NULL,"
            f" failed_runs=CASE WHEN %(transient)s THEN failed_runs+1 ELSE 0 END WHERE job=%(_job)s AND key=%(_key)s"
            f"{_HELD}", dict(status=status, error=error, error_status=error_status, settings_hash=settings_hash,
                             transient=transient, _job=self.job, _key=key, _held_by=self._run))

    async def release(self, key: str, *, error: str | None = None, error_status: int | None = None) -> None:
        extra = {} if error is None else {"error": error, "error_status": error_status}
        await self._set(key, _held_by=self._run, _settled=False, status="pending", lease_run=None, lease_until=None,
                        **extra)

    async def find_answer(self, request_hash: str, run_id: int | None) -> AnswerSource | None:
        row = await self._q(
            "SELECT key, request_hash, answer, output_path, output_hash FROM batch_inpaint_items WHERE job=%s"
            " AND request_hash=%s AND answer IS NOT NULL AND status NOT IN ('in_flight', 'failed')"
            " AND (%s::bigint IS NULL OR run_id=%s) ORDER BY status='done' DESC LIMIT 1",
            (self.job, request_hash, run_id, run_id), fetch="one")
        return None if row is None else AnswerSource(*row)

    async def _set(self, key: str, _held_by: int | None = None, _settled: bool = True, **fields: Any) -> bool:
        """Update one item; with ``_held_by``, only as `_HELD` says. ``_settled``: a new status stamps the
        server's time as when the item was settled."""
        columns = [f"{name}=%({name})s" for name in fields]
        if _settled and "status" in fields:
            columns.append(f"finished_at={_NOW}")
        guard = "" if _held_by is None else _HELD
        changed = await self._q(f"UPDATE batch_inpaint_items SET {', '.join(columns)} WHERE job=%(_job)s"
                                f" AND key=%(_key)s{guard}", dict(fields, _job=self.job, _key=key, _held_by=_held_by))
        return bool(changed)

    # --- reads behind status and export ----------------------------------------------------------

    async def counts(self) -> dict[str, int]:
        rows = await self._q("SELECT status, COUNT(*) FROM batch_inpaint_items WHERE job=%s GROUP BY status",
                             (self.job,), fetch="all")
        return {status: int(n) for status, n in rows}

    async def problems(self, limit: int, statuses: tuple[str, ...] = PROBLEMS) -> list[ItemProblem]:
        rows = await self._q("SELECT key, status, error_status, error FROM batch_inpaint_items WHERE job=%s"
                             " AND status = ANY(%s) ORDER BY key LIMIT %s", (self.job, list(statuses), limit),
                             fetch="all")
        return [ItemProblem(*row) for row in rows]

    async def flagged(self, limit: int) -> tuple[int, list[Flagged]]:
        where = "FROM batch_inpaint_items WHERE job=%s AND status='done' AND flags IS NOT NULL"
        (count,) = await self._q(f"SELECT COUNT(*) {where}", (self.job,), fetch="one")
        rows = await self._q(f"SELECT key, output_path, flags {where} ORDER BY key LIMIT %s", (self.job, limit),
                             fetch="all")
        return int(count), [Flagged(key, path, tuple(json.loads(flags))) for key, path, flags in rows]

    async def credits_spent(self) -> Decimal:
        rows = await self._q("SELECT credits FROM batch_inpaint_items WHERE job=%s AND credits IS NOT NULL",
                             (self.job,), fetch="all")
        return sum((decimal(r[0]) or Decimal(0) for r in rows), Decimal(0))

    async def items(self) -> AsyncIterator[ItemRecord]:
        after = ""
        while True:
            rows = await self._q(f"SELECT {_ITEM_COLUMNS} FROM batch_inpaint_items WHERE job=%s AND key > %s"
                                 " ORDER BY key LIMIT 1000", (self.job, after), fetch="all")
            if not rows:
                return
            for row in rows:
                yield item_record(row)
            after = rows[-1][0]


class PostgresLeases:
    """Sharing a job's items among its workers. A worker takes an item before preparing it (`claim`),
    renews every lease it holds while it works (`renew`), and records a result only while it still holds
    the item (`PostgresStore.record_done`). A worker that died holds its items until their leases run out;
    then any other takes them on, and the first request of the new holder counts as possibly charged twice,
    as after any crash."""

    def __init__(self, store: PostgresStore, seconds: float) -> None:
        self.store = store
        self.seconds = seconds

    @property
    def renew_every(self) -> float:
        return self.seconds / RENEWALS_PER_LEASE

    async def claim(self, key: str, run_id: int) -> bool:
        """Take the item, if it is due and no live lease is on it (this run's own included: an item walked
        twice is sent once). A row another worker is taking this instant is skipped (``SKIP LOCKED``),
        not waited for: it is that worker's."""
        s = self.store
        taken = await s._q(
            f"UPDATE batch_inpaint_items SET lease_run=%s, lease_until={_NOW} + %s WHERE (job, key) IN ("
            " SELECT job, key FROM batch_inpaint_items WHERE job=%s AND key=%s"
            f" AND status IN ('pending', 'in_flight') AND (lease_run IS NULL OR lease_until < {_NOW})"
            " FOR UPDATE SKIP LOCKED)", (run_id, self.seconds, s.job, key))
        return bool(taken)

    async def holds(self, key: str, run_id: int) -> bool:
        """Still this run's (its lease renewed): checked before an output is written."""
        s = self.store
        return bool(await s._q(f"UPDATE batch_inpaint_items SET lease_until={_NOW} + %s"
                               " WHERE job=%s AND key=%s AND lease_run=%s", (self.seconds, s.job, key, run_id)))

    async def renew(self, run_id: int) -> None:
        s = self.store
        await s._q(f"UPDATE batch_inpaint_items SET lease_until={_NOW} + %s WHERE job=%s AND lease_run=%s",
                   (self.seconds, s.job, run_id))

    async def outlook(self, run_id: int) -> Outlook:
        """What is left of the job for this worker: items it could take now, and the leases of others
        (when the first of them runs out, in seconds)."""
        s = self.store
        row = await s._q(
            f"SELECT COUNT(*) FILTER (WHERE status IN ('pending', 'in_flight') AND (lease_run IS NULL OR lease_until < {_NOW})),"
            f" COUNT(*) FILTER (WHERE lease_run <> %s AND lease_until >= {_NOW}),"
            f" MIN(lease_until - {_NOW}) FILTER (WHERE lease_run <> %s AND lease_until >= {_NOW})"
            " FROM batch_inpaint_items WHERE job=%s AND status IN ('pending', 'in_flight')",
            (run_id, run_id, s.job), fetch="one")
        return Outlook(int(row[0]), int(row[1]), None if row[2] is None else float(row[2]))

    async def workers(self) -> list[Worker]:
        """The runs of this job whose database session is alive, with the leases each holds."""
        s = self.store
        rows = await s._q(
            f"SELECT r.id, r.host, r.pid, r.started_at, COUNT(i.key), MIN(i.lease_until) - {_NOW}"
            " FROM batch_inpaint_runs r LEFT JOIN batch_inpaint_items i ON i.job=r.job AND i.lease_run=r.id"
            " WHERE r.job=%s AND r.ended_at IS NULL AND r.backend_pid IN (SELECT pid FROM pg_stat_activity)"
            " GROUP BY r.id ORDER BY r.id", (s.job,), fetch="all")
        return [Worker(run, host, pid, started, int(leases), soonest) for run, host, pid, started, leases, soonest in rows]


def default_job(out: str) -> str:
    """A new job's name when none is given: its output location as its first worker sees it (the others
    read it from the folder's mark, `jobfolder`, wherever they mount the folder)."""
    return out if "://" in out else os.path.abspath(out)
