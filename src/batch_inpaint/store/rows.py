"""How the SQL stores (SQLite, Postgres) turn records into columns and rows back into records."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any, Sequence

from ..pairing import FileSig
from .base import Fingerprint, ItemRecord, OutputRecord, RunRecord

#: The columns `run_record` reads, in its order.
RUN_COLUMNS = ("id, started_at, ended_at, pid, settings, counts, credits_used, remaining_credits, requests,"
               " possibly_charged_twice, exit_code, retries, rate_limited")


def sig_columns(sig: FileSig | None) -> tuple[int | None, int | None]:
    return (None, None) if sig is None else (sig.size, sig.mtime_ns)


def fingerprint_columns(f: Fingerprint) -> dict[str, Any]:
    return {"image_hash": f.image_hash, "mask_hash": f.mask_hash, "settings_hash": f.settings_hash,
            "content_key": f.content_key, "request_hash": f.request_hash,
            "fixes": json.dumps(list(f.fixes)) if f.fixes else None,
            "warnings": json.dumps(list(f.warnings)) if f.warnings else None}


def output_columns(output: OutputRecord) -> dict[str, Any]:
    return {"output_path": output.path, "output_hash": output.hash, "output_size": output.size}


def item_record(row: Sequence[Any]) -> ItemRecord:
    values = dict(zip(ItemRecord.__dataclass_fields__, row))
    for name in ("fixes", "warnings", "flags"):
        values[name] = tuple(json.loads(values[name])) if values[name] else ()
    return ItemRecord(**values)


def run_record(r: Sequence[Any]) -> RunRecord:
    return RunRecord(r[0], r[1], r[2], r[3], json.loads(r[4] or "{}"), json.loads(r[5] or "{}"), decimal(r[6]),
                     decimal(r[7]), r[8], r[9], r[10], r[11], r[12])


def decimal(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        return None
