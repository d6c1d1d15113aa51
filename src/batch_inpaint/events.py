"""Events for machines: one JSON object per line (``--log-format json``), for log collectors.

Every line has ``time`` (ISO 8601, UTC), ``level`` and ``event``; README lists each event's fields.
Field names are stable: a collector's queries keep working across versions.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable, TextIO

#: An event's name and fields, as `RunStats.emit` hands them over.
Sink = Callable[[str, str, dict[str, Any]], None]

#: The fields of each event besides time, level and event (README's table is checked against this).
FIELDS: dict[str, tuple[str, ...]] = {
    "run_started": ("run_id", "version", "pid", "settings"),
    "item_done": ("path", "status", "how", "attempts", "seconds", "credits", "output"),
    "item_failed": ("path", "status", "attempts", "seconds", "credits", "error", "http_status"),
    "item_invalid": ("path", "status", "attempts", "seconds", "credits", "error", "http_status"),
    "item_skipped": ("path", "status", "reason"),
    "rate_limited": ("path", "count", "pause_seconds", "pace_per_minute"),
    "notice": ("message",),
    "progress": ("settled", "due", "walk_finished", "requests", "per_minute", "credits_used", "remaining_credits"),
    "run_ended": ("exit_code", "stop_reason", "duration_seconds", "report", "summary"),
    "notify": ("sent", "to", "error"),
    "watch_started": ("input", "out", "settle_seconds", "polling"),
    "watch_stopped": ("exit_code", "passes"),
    "error": ("message", "exit_code"),
    #: an unexpected error (a bug): the same, with the traceback a text log would have shown
    "crash": ("message", "exit_code", "traceback"),
}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else str(value)
    return str(value)


class JsonLines:
    """Writes each event as one line on ``stream`` (stderr), flushed: a collector tails it live."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def __call__(self, event: str, level: str, fields: dict[str, Any]) -> None:
        line = json.dumps({"time": now_iso(), "level": level, "event": event, **fields}, default=_plain,
                          ensure_ascii=False)
        stream = self.stream or sys.stderr
        print(line, file=stream, flush=True)
