"""The in-memory store: the same rules as the SQLite one, kept in dicts, for unit tests and for `plan`
before any manifest exists. Nothing outlives the process."""

from __future__ import annotations

import time
from dataclasses import asdict
from decimal import Decimal
from typing import Any, AsyncIterator, Mapping, Sequence

from ..hashing import XXH128
from ..pairing import FileSig
from .base import (
    BRIEF_COLUMNS, PROBLEMS, AnswerSource, Brief, Fingerprint, Flagged, ItemProblem, ItemRecord, ItemRow, Leases, OutputRecord, Problem, RunEnd, RunRecord,
    SeenItem,
)

_EMPTY: dict[str, Any] = {
    "status": "pending", "image_path": None, "mask_path": None, "image_size": None, "image_mtime_ns": None,
    "image_hash": None, "mask_size": None, "mask_mtime_ns": None, "mask_hash": None, "settings_hash": None,
    "content_key": None, "attempts": 0, "sends": 0, "possibly_charged": 0, "error_status": None, "error": None,
    "fixes": (), "warnings": (), "output_path": None, "output_hash": None, "output_size": None, "credits": None,
    "remaining_credits": None, "started_at": None, "finished_at": None, "seconds": None, "run_id": None, "failed_runs": 0,
    "request_hash": None, "answer": None, "flags": (),
}


class MemoryStore:
    leases: Leases | None = None  #: one run at a time (the output folder's lock)
    content_hash = XXH128

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self._runs: list[RunRecord] = []

    @property
    def location(self) -> str:
        return "memory"

    async def start_run(self, settings: Mapping[str, Any], pid: int) -> int:
        self._runs.append(RunRecord(len(self._runs) + 1, time.time(), None, pid, dict(settings), {}, None, None,
                                    None, None, None))
        return len(self._runs)

    async def end_run(self, run_id: int, end: RunEnd) -> None:
        run = self._runs[run_id - 1]
        self._runs[run_id - 1] = RunRecord(run.id, run.started_at, time.time(), run.pid, run.settings,
                                           dict(end.counts), end.credits_used, end.remaining_credits, end.requests,
                                           end.possibly_charged_twice, int(end.exit_code), end.retries,
                                           end.rate_limited)

    async def runs(self) -> list[RunRecord]:
        return list(self._runs)

    async def briefs(self, keys: Sequence[str]) -> dict[str, Brief]:
        return {key: tuple(self.rows[key][f] for f in BRIEF_COLUMNS) for key in keys if key in self.rows}

    async def lookup(self, keys: Sequence[str]) -> dict[str, ItemRow]:
        return {key: ItemRow(key, *(self.rows[key][f] for f in ItemRow._fields[1:])) for key in keys if key in self.rows}

    async def record_seen(self, items: Sequence[SeenItem]) -> None:
        for item in items:
            row = self.rows.setdefault(item.key, dict(_EMPTY))
            row.update(image_path=item.image_path, mask_path=item.mask_path, error=item.error,
                       status="in_flight" if row["status"] == "in_flight" else item.status,
                       **_sig("image", item.image_sig), **_sig("mask", item.mask_sig))

    async def refresh_signatures(self, key: str, image_sig: FileSig, mask_sig: FileSig | None) -> None:
        self.rows[key].update(**_sig("image", image_sig), **_sig("mask", mask_sig))

    async def mark_in_flight(self, key: str, run_id: int, fingerprint: Fingerprint | None) -> bool:
        row = self.rows[key]
        resent = fingerprint is not None and row["status"] == "in_flight" and row["run_id"] != run_id
        if fingerprint is not None:
            row.update(_fingerprint(fingerprint))
        row.update(status="in_flight", attempts=row["attempts"] + 1, sends=row["sends"] + 1, run_id=run_id,
                   possibly_charged=row["possibly_charged"] + resent, started_at=row["started_at"] or time.time())
        return resent

    async def note_attempt_failure(self, key: str, *, error_status: int | None, error: str, possibly_charged: bool) -> None:
        row = self.rows[key]
        row.update(error_status=error_status, error=error, possibly_charged=row["possibly_charged"] + possibly_charged)

    async def record_done(self, key: str, run_id: int, *, output: OutputRecord, credits: Decimal,
                          remaining: Decimal | None, seconds: float | None, fingerprint: Fingerprint | None,
                          answer: str | None = None) -> None:
        self.rows[key].update(status="done", error=None, error_status=None, credits=str(credits), run_id=run_id,
                              failed_runs=0, answer=answer, flags=(),
                              remaining_credits=None if remaining is None else str(remaining), seconds=seconds,
                              finished_at=time.time(), **_output(output),
                              **(_fingerprint(fingerprint) if fingerprint is not None else {}))

    async def record_flags(self, key: str, flags: tuple[str, ...]) -> None:
        if self.rows[key]["status"] == "done":
            self.rows[key]["flags"] = tuple(flags)

    async def record_empty_mask(self, key: str, fingerprint: Fingerprint, output: OutputRecord | None) -> None:
        self.rows[key].update(status="empty_mask", error="mask is empty", finished_at=time.time(), flags=(),
                              **_fingerprint(fingerprint), **(_output(output) if output is not None else {}))

    async def record_failure(self, key: str, *, status: Problem, error: str, error_status: int | None,
                             settings_hash: str, transient: bool = False) -> None:
        row = self.rows[key]
        row.update(status=status, error=error, error_status=error_status, settings_hash=settings_hash,
                   finished_at=time.time(), failed_runs=row["failed_runs"] + 1 if transient else 0, flags=())

    async def release(self, key: str, *, error: str | None = None, error_status: int | None = None) -> None:
        self.rows[key]["status"] = "pending"
        if error is not None:
            self.rows[key].update(error=error, error_status=error_status)

    async def find_answer(self, request_hash: str, run_id: int | None) -> AnswerSource | None:
        found = [(key, row) for key, row in self.rows.items()
                 if row["request_hash"] == request_hash and row["answer"] is not None
                 and row["status"] not in ("in_flight", "failed") and (run_id is None or row["run_id"] == run_id)]
        if not found:
            return None
        key, row = sorted(found, key=lambda kr: kr[1]["status"] != "done")[0]
        return AnswerSource(key, request_hash, row["answer"], row["output_path"], row["output_hash"])

    async def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rows.values():
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        return counts

    async def problems(self, limit: int, statuses: tuple[str, ...] = PROBLEMS) -> list[ItemProblem]:
        found = [ItemProblem(key, row["status"], row["error_status"], row["error"])
                 for key, row in sorted(self.rows.items()) if row["status"] in statuses]
        return found[:limit]

    async def flagged(self, limit: int) -> tuple[int, list[Flagged]]:
        found = [Flagged(key, row["output_path"], row["flags"]) for key, row in sorted(self.rows.items())
                 if row["status"] == "done" and row["flags"]]
        return len(found), found[:limit]

    async def credits_spent(self) -> Decimal:
        return sum((Decimal(row["credits"]) for row in self.rows.values() if row["credits"] is not None), Decimal(0))

    async def items(self) -> AsyncIterator[ItemRecord]:
        for key in sorted(self.rows):
            row = self.rows[key]
            yield ItemRecord(key=key, **{f: row[f] for f in ItemRecord.__dataclass_fields__ if f != "key"})

    async def aclose(self) -> None:
        return None


def _sig(prefix: str, sig: FileSig | None) -> dict[str, int | None]:
    return {f"{prefix}_size": sig.size if sig else None, f"{prefix}_mtime_ns": sig.mtime_ns if sig else None}


def _fingerprint(f: Fingerprint) -> dict[str, Any]:
    return asdict(f)


def _output(output: OutputRecord) -> dict[str, Any]:
    return {"output_path": output.path, "output_hash": output.hash, "output_size": output.size}
