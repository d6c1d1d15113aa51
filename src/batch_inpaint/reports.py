"""What a person or a pipeline reads after a run: the summary, `status`, and `export`."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterator, TextIO

from .manifest import Manifest
from .stats import RunStats

EXPORT_COLUMNS = ("key", "status", "error_status", "error", "output_path", "output_hash", "credits",
                  "remaining_credits", "attempts", "sends", "possibly_charged", "fixes", "warnings",
                  "image_path", "mask_path", "started_at", "finished_at", "seconds")


def summary(stats: RunStats, exit_code: int, stop_reason: str | None) -> str:
    counts = [(stats.done, "done"), (stats.copied, "copied from identical pairs"),
              (stats.already_done, "already done"), (stats.failed, "failed"), (stats.invalid, "invalid"),
              (stats.kept_failed, "failed before (not retried; see --retry-failed)"),
              (stats.no_mask, "without a mask"), (stats.empty_mask, "with an empty mask")]
    shown = ", ".join(f"{n} {what}" for n, what in counts if n) or "nothing to do"
    lines = [
        f"batch-inpaint: {stats.seen} images seen: {shown}",
        f"requests {stats.requests} (retries {stats.retries}, rate-limited {stats.rate_limited}), "
        f"credits used {stats.credits_used}"
        + (f", remaining {stats.remaining_credits}" if stats.remaining_credits is not None else "")
        + (f", possibly charged twice {stats.possibly_charged}" if stats.possibly_charged else ""),
    ]
    if stats.fixes:
        lines.append("fixed before upload: " + ", ".join(f"{k} ({v})" for k, v in sorted(stats.fixes.items())))
    for key, status, reason in stats.problems:
        lines.append(f"  {status}: {key}: {reason}")
    if stats.failed + stats.invalid > len(stats.problems):
        lines.append(f"  ... and {stats.failed + stats.invalid - len(stats.problems)} more (batch-inpaint status)")
    for key, note in stats.notes[:50]:
        lines.append(f"  note: {key}: {note}")
    for path in stats.orphans[:50]:
        lines.append(f"  mask without an image: {path}")
    if stop_reason:
        lines.append(f"stopped: {stop_reason}")
    lines.append(f"exit code {exit_code}")
    return "\n".join(lines)


def status_report(manifest: Manifest) -> str:
    counts = manifest.counts()
    runs = manifest.runs()
    lines = ["items: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none")]
    lines.append(f"credits used, all runs: {manifest.credits_spent()}")
    if runs:
        last = runs[-1]
        lines.append(f"runs: {len(runs)}; last run #{last['id']}: credits used {last['credits_used'] or 0}, "
                     f"exit code {last['exit_code'] if last['exit_code'] is not None else 'none (still running or killed)'}, "
                     f"ended {_when(last['ended_at'])}")
        remaining = next((r["remaining_credits"] for r in reversed(runs) if r["remaining_credits"]), None)
        if remaining is not None:
            lines.append(f"last remaining credits reported by the API: {remaining}")
        twice = sum(r["possibly_charged_twice"] or 0 for r in runs)
        if twice:
            lines.append(f"items resent after a crash (possibly charged twice): {twice}")
    for row in manifest.problems():
        code = f" (HTTP {row['error_status']})" if row["error_status"] else ""
        lines.append(f"  {row['status']}: {row['key']}{code}: {row['error']}")
    return "\n".join(lines)


def _when(ts: float | None) -> str:
    import time

    return "never" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def export_rows(manifest: Manifest) -> Iterator[dict[str, Any]]:
    for row in manifest.items():
        yield {col: row[col] for col in EXPORT_COLUMNS}


def export(manifest: Manifest, fmt: str, stream: TextIO) -> int:
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(stream, fieldnames=EXPORT_COLUMNS)
        writer.writeheader()
        for row in export_rows(manifest):
            writer.writerow(row)
            count += 1
    else:
        for row in export_rows(manifest):
            stream.write(json.dumps(row) + "\n")
            count += 1
    return count


def open_existing(path: Path) -> Manifest:
    if not path.is_file():
        raise FileNotFoundError(path)
    return Manifest(path)

