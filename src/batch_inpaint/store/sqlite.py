"""The SQLite store: the embedded default, one file beside the outputs.

WAL mode, ``PRAGMA user_version`` for the schema, every write in one ``BEGIN IMMEDIATE`` transaction
(`SqliteStore.atomic`). Each verb runs in the store's own worker thread, one at a time, never on the
event loop; ``sqlite3`` errors become `ManifestError` here and nowhere else.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Concatenate, Coroutine, Iterator, Mapping, ParamSpec, Sequence, TypeVar

import anyio

from ..errors import ManifestError
from ..hashing import XXH128
from ..pairing import FileSig
from ..signatures import brief_rows
from .base import (
    BRIEF_COLUMNS, PROBLEMS, AnswerSource, Brief, Fingerprint, Flagged, ItemProblem, ItemRecord, ItemRow, Leases, OutputRecord, Problem, RunEnd, RunRecord,
    SeenItem,
)
from .rows import RUN_COLUMNS, decimal, fingerprint_columns, item_record, output_columns, run_record, sig_columns
from .schema import SCHEMA_VERSION, migrations

P = ParamSpec("P")
T = TypeVar("T")
_ROW_COLUMNS = ", ".join(ItemRow._fields)
#: Brief rows by key, also read by the signatures helper of a large re-run (`brief_rows`).
BRIEF_SELECT = f"SELECT key, {', '.join(BRIEF_COLUMNS)} FROM items WHERE"
_ITEM_COLUMNS = ", ".join(ItemRecord.__dataclass_fields__)


def _in_thread(method: Callable[Concatenate["SqliteStore", P], T]) -> Callable[Concatenate["SqliteStore", P], Coroutine[Any, Any, T]]:
    """Write a verb's body as plain synchronous SQLite; callers await it, and it runs in the store's thread."""

    @functools.wraps(method)
    async def verb(self: "SqliteStore", /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._call(functools.partial(method, self, *args, **kwargs))

    return verb


class SqliteStore:
    leases: Leases | None = None  #: one run at a time (the output folder's lock)
    def __init__(self, path: Path, *, create: bool = True) -> None:
        """``create=False`` opens an existing manifest only (for `status`, `export` and `plan`)."""
        self.path = path
        self._thread: anyio.CapacityLimiter | None = None
        try:
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._migrate()
            else:
                self._db = self._open_read_only(path)
            self.content_hash = str(self._db.execute("SELECT value FROM meta WHERE name='content_hash'").fetchone()[0])
        except (sqlite3.DatabaseError, OSError) as exc:
            raise ManifestError(f"{path}: cannot open the manifest: {exc}") from None

    @property
    def location(self) -> str:
        return str(self.path)

    async def _call(self, fn: Callable[[], T]) -> T:
        if self._thread is None:
            self._thread = anyio.CapacityLimiter(1)
        try:
            return await anyio.to_thread.run_sync(fn, limiter=self._thread)
        except sqlite3.Error as exc:
            raise ManifestError(f"{self.path}: {exc}") from None

    @contextmanager
    def atomic(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once so concurrent writers queue instead of deadlocking."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise ManifestError(f"{self.path}: cannot write the manifest: {exc}") from None

    @staticmethod
    def _open_read_only(path: Path) -> sqlite3.Connection:
        """Read only, so `status` works on a folder it may not write to. A WAL manifest needs its
        shared-memory file; where that cannot be made (a read-only folder, no run active) the file is
        read as it stands (``immutable``)."""
        uri = path.resolve().as_uri()
        for query in ("mode=ro", "mode=ro&immutable=1"):
            db = sqlite3.connect(f"{uri}?{query}", isolation_level=None, check_same_thread=False, timeout=30,
                                 uri=True)
            try:
                version = db.execute("PRAGMA user_version").fetchone()[0]
            except sqlite3.OperationalError:
                db.close()
                continue
            if version != SCHEMA_VERSION:
                db.close()
                newer = "a newer batch-inpaint: upgrade to read it" if version > SCHEMA_VERSION else \
                    "an older batch-inpaint: a run with this version upgrades it"
                raise ManifestError(f"{path}: the manifest was written by {newer}")
            return db
        raise sqlite3.OperationalError("unable to open database file read-only")

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ManifestError(f"schema version {version} is newer than this batch-inpaint knows ({SCHEMA_VERSION})")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self.atomic() as db:
                for statement in migrations[target].split(";"):
                    if statement.strip():
                        db.execute(statement)
                if version == 0 and target == SCHEMA_VERSION:  # made just now: nothing recorded yet
                    db.execute("UPDATE meta SET value=? WHERE name='content_hash'", (XXH128,))
                db.execute(f"PRAGMA user_version = {target}")

    async def aclose(self) -> None:
        self._db.close()

    # --- runs ---------------------------------------------------------------------------------

    @_in_thread
    def start_run(self, settings: Mapping[str, Any], pid: int) -> int:
        with self.atomic() as db:
            cur = db.execute("INSERT INTO runs (started_at, pid, settings) VALUES (?, ?, ?)",
                             (time.time(), pid, json.dumps(settings, default=str, sort_keys=True)))
            return int(cur.lastrowid or 0)

    @_in_thread
    def end_run(self, run_id: int, end: RunEnd) -> None:
        with self.atomic() as db:
            db.execute(
                "UPDATE runs SET ended_at=?, counts=?, credits_used=?, remaining_credits=?, requests=?,"
                " possibly_charged_twice=?, exit_code=?, retries=?, rate_limited=? WHERE id=?",
                (time.time(), json.dumps(dict(end.counts), sort_keys=True), str(end.credits_used),
                 None if end.remaining_credits is None else str(end.remaining_credits), end.requests,
                 end.possibly_charged_twice, int(end.exit_code), end.retries, end.rate_limited, run_id),
            )

    @_in_thread
    def runs(self) -> list[RunRecord]:
        rows = self._db.execute(f"SELECT {RUN_COLUMNS} FROM runs ORDER BY id")
        return [run_record(r) for r in rows]

    # --- items: the walk and the decisions ------------------------------------------------------

    @_in_thread
    def briefs(self, keys: Sequence[str]) -> dict[str, Brief]:
        return brief_rows(self._db, BRIEF_SELECT, keys)

    def brief_source(self) -> tuple[str, str]:
        """Where another process reads the same rows (`signatures.Helper`): the manifest's URI, read
        only (no checkpoint when it closes, so `plan` still writes nothing), and the select."""
        return f"{self.path.resolve().as_uri()}?mode=ro", BRIEF_SELECT

    @_in_thread
    def lookup(self, keys: Sequence[str]) -> dict[str, ItemRow]:
        found: dict[str, ItemRow] = {}
        cursor = self._db.cursor()
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in cursor.execute(f"SELECT {_ROW_COLUMNS} FROM items WHERE key IN ({marks})", chunk):
                found[row[0]] = ItemRow(*row)
        return found

    @_in_thread
    def record_seen(self, items: Sequence[SeenItem]) -> None:
        now = time.time()
        with self.atomic() as db:
            db.executemany(
                "INSERT INTO items (key, image_path, mask_path, image_size, image_mtime_ns, mask_size,"
                " mask_mtime_ns, status, error, first_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(key) DO UPDATE SET image_path=excluded.image_path, mask_path=excluded.mask_path,"
                " image_size=excluded.image_size, image_mtime_ns=excluded.image_mtime_ns,"
                " mask_size=excluded.mask_size, mask_mtime_ns=excluded.mask_mtime_ns,"
                " status=CASE WHEN items.status='in_flight' THEN 'in_flight' ELSE excluded.status END,"
                " error=excluded.error",
                [(i.key, i.image_path, i.mask_path, *sig_columns(i.image_sig), *sig_columns(i.mask_sig), i.status, i.error, now)
                 for i in items],
            )

    @_in_thread
    def refresh_signatures(self, key: str, image_sig: FileSig, mask_sig: FileSig | None) -> None:
        with self.atomic() as db:
            db.execute("UPDATE items SET image_size=?, image_mtime_ns=?, mask_size=?, mask_mtime_ns=? WHERE key=?",
                       (*sig_columns(image_sig), *sig_columns(mask_sig), key))

    # --- items: sending -----------------------------------------------------------------------

    @_in_thread
    def mark_in_flight(self, key: str, run_id: int, fingerprint: Fingerprint | None) -> bool:
        with self.atomic() as db:
            resent = False
            if fingerprint is not None:
                row = db.execute("SELECT status, run_id FROM items WHERE key=?", (key,)).fetchone()
                resent = row is not None and row[0] == "in_flight" and row[1] != run_id
                _set(db, key, **fingerprint_columns(fingerprint))
            db.execute(
                "UPDATE items SET status='in_flight', attempts=attempts+1, sends=sends+1,"
                " possibly_charged=possibly_charged+?, started_at=COALESCE(started_at, ?), run_id=? WHERE key=?",
                (1 if resent else 0, time.time(), run_id, key),
            )
            return resent

    @_in_thread
    def note_attempt_failure(self, key: str, *, error_status: int | None, error: str, possibly_charged: bool) -> None:
        with self.atomic() as db:
            db.execute("UPDATE items SET error_status=?, error=?, possibly_charged=possibly_charged+? WHERE key=?",
                       (error_status, error, 1 if possibly_charged else 0, key))

    @_in_thread
    def record_done(self, key: str, run_id: int, *, output: OutputRecord, credits: Decimal,
                    remaining: Decimal | None, seconds: float | None, fingerprint: Fingerprint | None,
                    answer: str | None = None) -> None:
        fields = fingerprint_columns(fingerprint) if fingerprint is not None else {}
        with self.atomic() as db:
            _set(db, key, status="done", error=None, error_status=None, credits=str(credits), run_id=run_id, failed_runs=0,
                 answer=answer, flags=None,
                 remaining_credits=None if remaining is None else str(remaining), seconds=seconds,
                 finished_at=time.time(), **output_columns(output), **fields)

    @_in_thread
    def record_flags(self, key: str, flags: tuple[str, ...]) -> None:
        with self.atomic() as db:
            db.execute("UPDATE items SET flags=? WHERE key=? AND status='done'",
                       (json.dumps(list(flags)) if flags else None, key))

    @_in_thread
    def record_empty_mask(self, key: str, fingerprint: Fingerprint, output: OutputRecord | None) -> None:
        with self.atomic() as db:
            _set(db, key, status="empty_mask", error="mask is empty", finished_at=time.time(), flags=None,
                 **fingerprint_columns(fingerprint), **(output_columns(output) if output is not None else {}))

    @_in_thread
    def record_failure(self, key: str, *, status: Problem, error: str, error_status: int | None,
                       settings_hash: str, transient: bool = False) -> None:
        with self.atomic() as db:
            _set(db, key, status=status, error=error, error_status=error_status, settings_hash=settings_hash,
                 finished_at=time.time(), flags=None)
            db.execute("UPDATE items SET failed_runs=CASE WHEN ? THEN failed_runs+1 ELSE 0 END WHERE key=?",
                       (transient, key))

    @_in_thread
    def release(self, key: str, *, error: str | None = None, error_status: int | None = None) -> None:
        with self.atomic() as db:
            if error is None:
                _set(db, key, status="pending")
            else:
                _set(db, key, status="pending", error=error, error_status=error_status)

    @_in_thread
    def find_answer(self, request_hash: str, run_id: int | None) -> AnswerSource | None:
        row = self._db.execute(
            "SELECT key, request_hash, answer, output_path, output_hash FROM items WHERE request_hash=?"
            " AND answer IS NOT NULL AND status NOT IN ('in_flight', 'failed') AND (? IS NULL OR run_id=?)"
            " ORDER BY status='done' DESC LIMIT 1",
            (request_hash, run_id, run_id),
        ).fetchone()
        return None if row is None else AnswerSource(*row)

    # --- reads behind status and export ----------------------------------------------------------

    @_in_thread
    def counts(self) -> dict[str, int]:
        return {row[0]: row[1] for row in self._db.execute("SELECT status, COUNT(*) FROM items GROUP BY status")}

    @_in_thread
    def problems(self, limit: int, statuses: tuple[str, ...] = PROBLEMS) -> list[ItemProblem]:
        marks = ", ".join("?" * len(statuses))
        rows = self._db.execute(f"SELECT key, status, error_status, error FROM items WHERE status IN ({marks})"
                                " ORDER BY key LIMIT ?", (*statuses, limit))
        return [ItemProblem(*row) for row in rows]

    @_in_thread
    def flagged(self, limit: int) -> tuple[int, list[Flagged]]:
        where = "FROM items WHERE status='done' AND flags IS NOT NULL"
        count = self._db.execute(f"SELECT COUNT(*) {where}").fetchone()[0]
        rows = self._db.execute(f"SELECT key, output_path, flags {where} ORDER BY key LIMIT ?", (limit,))
        return count, [Flagged(key, path, tuple(json.loads(flags))) for key, path, flags in rows]

    @_in_thread
    def credits_spent(self) -> Decimal:
        rows = self._db.execute("SELECT credits FROM items WHERE credits IS NOT NULL")
        return sum((decimal(r[0]) or Decimal(0) for r in rows), Decimal(0))

    async def items(self) -> AsyncIterator[ItemRecord]:
        cursor = await self._call(lambda: self._db.execute(f"SELECT {_ITEM_COLUMNS} FROM items ORDER BY key"))
        while rows := await self._call(lambda: cursor.fetchmany(1000)):
            for row in rows:
                yield item_record(row)


def _set(db: sqlite3.Connection, key: str, **fields: Any) -> None:
    columns = ", ".join(f"{name}=:{name}" for name in fields)
    db.execute(f"UPDATE items SET {columns} WHERE key=:key", dict(fields, key=key))
