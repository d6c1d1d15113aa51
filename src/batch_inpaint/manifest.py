"""The SQLite manifest: one row per item, one per run; what makes a run resumable and never pay twice.

WAL mode, ``PRAGMA user_version`` for the schema, and every write in one ``BEGIN IMMEDIATE`` transaction
through `Manifest.atomic`. The methods are synchronous; the pipeline calls them from one worker thread.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

from .errors import ManifestError

SCHEMA_VERSION = 1
STATUSES = ("pending", "in_flight", "done", "failed", "invalid", "no_mask", "empty_mask")

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE items (
        key TEXT PRIMARY KEY,
        image_path TEXT, mask_path TEXT,
        image_size INTEGER, image_mtime_ns INTEGER, image_hash TEXT,
        mask_size INTEGER, mask_mtime_ns INTEGER, mask_hash TEXT,
        settings_hash TEXT, content_key TEXT,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        sends INTEGER NOT NULL DEFAULT 0,
        possibly_charged INTEGER NOT NULL DEFAULT 0,
        error_status INTEGER, error TEXT, fixes TEXT, warnings TEXT,
        output_path TEXT, output_hash TEXT, output_size INTEGER,
        credits TEXT, remaining_credits TEXT,
        first_seen REAL, started_at REAL, finished_at REAL, seconds REAL, run_id INTEGER
    );
    CREATE INDEX items_status ON items(status);
    CREATE INDEX items_content ON items(content_key, settings_hash);
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        started_at REAL NOT NULL, ended_at REAL, pid INTEGER,
        settings TEXT, counts TEXT, credits_used TEXT, remaining_credits TEXT,
        requests INTEGER, possibly_charged_twice INTEGER, exit_code INTEGER
    );
    """,
}


class ItemRow(NamedTuple):
    """What a re-run needs to know of an item: read for every item walked, so a plain tuple."""

    key: str
    status: str
    image_size: int | None
    image_mtime_ns: int | None
    image_hash: str | None
    mask_size: int | None
    mask_mtime_ns: int | None
    mask_hash: str | None
    settings_hash: str | None
    output_path: str | None
    output_size: int | None


_ROW_COLUMNS = ", ".join(ItemRow._fields)


class Manifest:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except (sqlite3.DatabaseError, OSError) as exc:
            raise ManifestError(f"{path}: cannot open the manifest: {exc}") from None

    def close(self) -> None:
        self._db.close()

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

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ManifestError(f"schema version {version} is newer than this batch-inpaint knows ({SCHEMA_VERSION})")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self.atomic() as db:
                for statement in _MIGRATIONS[target].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {target}")

    # --- runs ---------------------------------------------------------------------------------

    def start_run(self, settings: dict[str, Any], pid: int) -> int:
        with self.atomic() as db:
            cur = db.execute(
                "INSERT INTO runs (started_at, pid, settings) VALUES (?, ?, ?)",
                (time.time(), pid, json.dumps(settings, default=str, sort_keys=True)),
            )
            return int(cur.lastrowid or 0)

    def end_run(self, run_id: int, *, counts: dict[str, int], credits_used: str, remaining: str | None,
                requests: int, possibly_charged_twice: int, exit_code: int) -> None:
        with self.atomic() as db:
            db.execute(
                "UPDATE runs SET ended_at=?, counts=?, credits_used=?, remaining_credits=?, requests=?,"
                " possibly_charged_twice=?, exit_code=? WHERE id=?",
                (time.time(), json.dumps(counts, sort_keys=True), credits_used, remaining, requests,
                 possibly_charged_twice, exit_code, run_id),
            )

    def runs(self) -> list[sqlite3.Row]:
        return list(self._db.execute("SELECT * FROM runs ORDER BY id"))

    # --- items --------------------------------------------------------------------------------

    def lookup(self, keys: Sequence[str]) -> dict[str, ItemRow]:
        found: dict[str, ItemRow] = {}
        cursor = self._db.cursor()
        cursor.row_factory = None  # plain tuples: a re-run reads a row for every item it walks
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in cursor.execute(f"SELECT {_ROW_COLUMNS} FROM items WHERE key IN ({marks})", chunk):
                found[row[0]] = ItemRow(*row)
        return found

    def upsert_seen(self, rows: Iterable[dict[str, Any]]) -> None:
        """Record items the walk found (new, or changed since they were last seen) as ``status``."""
        now = time.time()
        with self.atomic() as db:
            db.executemany(
                "INSERT INTO items (key, image_path, mask_path, image_size, image_mtime_ns, mask_size,"
                " mask_mtime_ns, status, error, first_seen) VALUES (:key, :image_path, :mask_path,"
                " :image_size, :image_mtime_ns, :mask_size, :mask_mtime_ns, :status, :error, :now)"
                " ON CONFLICT(key) DO UPDATE SET image_path=excluded.image_path, mask_path=excluded.mask_path,"
                " image_size=excluded.image_size, image_mtime_ns=excluded.image_mtime_ns,"
                " mask_size=excluded.mask_size, mask_mtime_ns=excluded.mask_mtime_ns,"
                " status=CASE WHEN items.status='in_flight' THEN 'in_flight' ELSE excluded.status END,"
                " error=excluded.error",
                [dict(row, now=now) for row in rows],
            )

    def update(self, key: str, **fields: Any) -> None:
        columns = ", ".join(f"{name}=:{name}" for name in fields)
        with self.atomic() as db:
            db.execute(f"UPDATE items SET {columns} WHERE key=:key", dict(fields, key=key))

    def refresh_signatures(self, key: str, image: tuple[int, int], mask: tuple[int, int] | None) -> None:
        """Inputs touched but not changed (same hash): remember the new size and mtime."""
        with self.atomic() as db:
            db.execute(
                "UPDATE items SET image_size=?, image_mtime_ns=?, mask_size=?, mask_mtime_ns=? WHERE key=?",
                (image[0], image[1], mask[0] if mask else None, mask[1] if mask else None, key),
            )

    def mark_in_flight(self, key: str, run_id: int, *, first: bool, **fields: Any) -> bool:
        """Before each request goes out (``fields``: the item's fingerprint, on the first attempt).

        True if a crash had left the item in flight: its answer was lost, and it may have been charged.
        """
        extra = "".join(f", {name}=:{name}" for name in fields)
        with self.atomic() as db:
            resent = False
            if first:
                row = db.execute("SELECT status FROM items WHERE key=?", (key,)).fetchone()
                resent = row is not None and row["status"] == "in_flight"
            db.execute(
                "UPDATE items SET status='in_flight', attempts=attempts+1, sends=sends+1,"
                " possibly_charged=possibly_charged+:resent, started_at=COALESCE(started_at, :now),"
                f" run_id=:run_id{extra} WHERE key=:key",
                dict(fields, resent=1 if resent else 0, now=time.time(), run_id=run_id, key=key),
            )
            return resent

    def note_failure(self, key: str, *, error_status: int | None, error: str, possibly_charged: bool) -> None:
        """An attempt failed; the item stays in flight until it succeeds or is given up."""
        with self.atomic() as db:
            db.execute(
                "UPDATE items SET error_status=?, error=?, possibly_charged=possibly_charged+? WHERE key=?",
                (error_status, error, 1 if possibly_charged else 0, key),
            )

    def find_done_output(self, content_key: str, settings_hash: str, run_id: int | None = None) -> str | None:
        row = self._db.execute(
            "SELECT output_path FROM items WHERE content_key=? AND settings_hash=? AND status='done'"
            " AND (? IS NULL OR run_id=?) LIMIT 1",
            (content_key, settings_hash, run_id, run_id),
        ).fetchone()
        return None if row is None else str(row[0])

    def counts(self) -> dict[str, int]:
        return {row[0]: row[1] for row in self._db.execute("SELECT status, COUNT(*) FROM items GROUP BY status")}

    def problems(self, limit: int = 50) -> list[sqlite3.Row]:
        return list(self._db.execute(
            "SELECT key, status, error_status, error FROM items WHERE status IN ('failed', 'invalid')"
            " ORDER BY key LIMIT ?", (limit,)))

    def credits_spent(self) -> str:
        total = sum((_dec(r[0]) for r in self._db.execute("SELECT credits FROM items WHERE credits IS NOT NULL")), _dec("0"))
        return str(total)

    def items(self) -> Iterator[sqlite3.Row]:
        yield from self._db.execute("SELECT * FROM items ORDER BY key")


def _dec(value: str) -> Any:
    from decimal import Decimal, InvalidOperation

    try:
        return Decimal(value)
    except InvalidOperation:
        return Decimal(0)
