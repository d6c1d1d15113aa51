"""The emulator's request log (JSON lines, never the key), and what tests and benchmarks read from it."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Iterable


class RequestLog:
    """JSON lines, one per request: arrival time, status, fault, whether it was charged. Never the key."""

    def __init__(self, path: Path | None) -> None:
        self._fh = path.open("a", encoding="utf-8") if path else None
        self._lock = threading.Lock()
        self.entries: list[dict[str, Any]] = []

    def write(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.entries.append(entry)
            if self._fh is not None:
                self._fh.write(json.dumps(entry) + "\n")
                self._fh.flush()


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def busiest_window(times: Iterable[float], width: float = 60.0) -> int:
    """The most requests that arrived within any ``width`` seconds: what a sliding-window limiter counts."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best
