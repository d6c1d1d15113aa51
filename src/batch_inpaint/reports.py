"""What a person or a pipeline reads after a run: the summary, `status`, and `export`."""

from __future__ import annotations

import csv
import datetime
import json
import time
from pathlib import Path
from typing import TextIO

from .limiter.schedule import Schedule
from .stats import RunStats
from .store import ItemRecord, Store

EXPORT_COLUMNS = tuple(ItemRecord.__dataclass_fields__)
#: Items a summary or `status` names one by one before "... and N more".
LISTED = 50


def summary(stats: RunStats, exit_code: int, stop_reason: str | None, *, local: bool = False) -> str:
    """The end of a run in a few lines; ``local``: the offline engine, which sends no request and pays nothing."""
    counts = [(stats.done, "done"), (stats.copied, "made from an identical pair's answer"),
              (stats.reencoded, "made again from answers already paid for"),
              (stats.adopted, "already in the output folder, taken as done (--force redoes them)"),
              (stats.already_done, "already done"), (stats.failed, "failed"), (stats.invalid, "invalid"),
              (stats.kept_failed, "failed before (retried when their image or mask changes)"),
              (stats.kept_gave_up, "failed on server or network errors in several runs in a row "
                                   "(retry them with --retry-failed)"),
              (stats.no_mask, "without a mask"), (stats.empty_mask, "with an empty mask"),
              (stats.flagged, "flagged for a second look (see the report)"),
              (stats.unsettled, "still being written (taken once unchanged for --settle seconds)"),
              (stats.elsewhere, "done or being done by other workers of the job"),
              (stats.lease_lost, "taken on by another worker while this one was held up (not recorded twice)")]
    counts.append((stats.left, "left pending (the next run continues)"))
    shown = ", ".join(f"{n} {what}" for n, what in counts if n) or ("nothing to do" if exit_code == 0 else "nothing done")
    lines = [f"batch-inpaint: {stats.seen} images seen: {shown}"]
    if not local:
        lines.append(f"requests {stats.requests} (retries {stats.retries}, rate-limited {stats.rate_limited}), "
                     f"credits used {stats.credits_used}"
                     + (f", remaining {stats.remaining_credits}" if stats.remaining_credits is not None else "")
                     + (f", possibly charged twice {stats.possibly_charged}" if stats.possibly_charged else ""))
    lines.extend(f"note: {text}" for text in stats.notices[stats.notices_shown:])
    if stats.answers_kept:
        lines.append(f"answers kept for a later change of output format: {stats.answers_kept} "
                     f"({stats.answers_kept_bytes / 1e6:.1f} MB; --no-keep-answers to skip)")
    if stats.fixes:
        lines.append("fixed before upload: " + ", ".join(f"{k} ({v})" for k, v in sorted(stats.fixes.items())))
    for key, status, reason in stats.problems[:LISTED]:
        lines.append(f"  {status}: {key}: {reason}")
    lines.extend(_more(stats.failed + stats.invalid, LISTED, "failed or invalid"))
    for key in stats.no_mask_keys[:LISTED]:
        lines.append(f"  without a mask: {key}")
    lines.extend(_more(len(stats.no_mask_keys) + stats.no_mask_more, LISTED, "without a mask"))
    for key, note in stats.notes[:LISTED]:
        lines.append(f"  note: {key}: {note}")
    lines.extend(_more(stats.noted, LISTED, "notes"))
    for path in stats.orphans[:LISTED]:
        lines.append(f"  mask without an image: {path}")
    lines.extend(_more(stats.orphan_masks, LISTED, "masks without an image"))
    if stop_reason:
        lines.append(f"stopped: {stop_reason}")
    lines.append(f"exit code {exit_code}")
    return "\n".join(lines)


def summary_json(stats: RunStats, exit_code: int, stop_reason: str | None, report: Path | None = None) -> str:
    """The summary as one JSON object, for scripts (``--summary json``)."""
    return json.dumps({
        "report": None if report is None else str(report.absolute()), "flagged": stats.flagged,
        "exit_code": exit_code, "stop_reason": stop_reason, "counts": stats.counts(), "left_pending": stats.left,
        "credits_used": str(stats.credits_used),
        "remaining_credits": None if stats.remaining_credits is None else str(stats.remaining_credits),
        "problems": [{"key": k, "status": st, "reason": r} for k, st, r in stats.problems],
        "without_mask": stats.no_mask_keys, "masks_without_image": stats.orphans, "notices": stats.notices,
        "notes": [{"key": k, "note": n} for k, n in stats.notes], "fixes": stats.fixes,
    })


async def status_report(store: Store) -> str:
    counts = await store.counts()
    runs = await store.runs()
    lines = ["items: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none")]
    lines.append(f"credits used, all runs: {await store.credits_spent()}")
    if runs:
        last = runs[-1]
        ended = "none (still running or killed)" if last.exit_code is None else last.exit_code
        lines.append(f"runs: {len(runs)}; last run #{last.id}: credits used {last.credits_used or 0}, "
                     f"exit code {ended}, ended {when(last.ended_at)}")
        remaining = next((r.remaining_credits for r in reversed(runs) if r.remaining_credits is not None), None)
        if remaining is not None:
            lines.append(f"last remaining credits reported by the API: {remaining}")
        twice = sum(r.possibly_charged_twice or 0 for r in runs)
        if twice:
            lines.append(f"items resent after a crash (possibly charged twice): {twice}")
    if store.leases is not None:
        workers = await store.leases.workers()
        lines.append(f"workers alive: {len(workers)}")
        for w in workers:
            expiry = "" if w.soonest_expiry is None else f", the first runs out in {max(0.0, w.soonest_expiry):.0f} s"
            lines.append(f"  run #{w.run_id} on {w.host} (pid {w.pid}), since {when(w.started_at)}: "
                         f"{w.leases} items leased{expiry}")
    flagged_count, flagged = await store.flagged(LISTED)
    if flagged_count:
        lines.append(f"results flagged for a second look: {flagged_count} (the report shows them; export has "
                     "the flags)")
    problems = counts.get("failed", 0) + counts.get("invalid", 0)
    for problem in await store.problems(LISTED):
        code = f" (HTTP {problem.error_status})" if problem.error_status else ""
        lines.append(f"  {problem.status}: {problem.key}{code}: {problem.error}")
    lines.extend(_more(problems, LISTED, "failed or invalid"))
    for item in await store.problems(LISTED, ("no_mask",)):
        lines.append(f"  without a mask: {item.key}")
    lines.extend(_more(counts.get("no_mask", 0), LISTED, "without a mask"))
    for flag in flagged:
        lines.append(f"  flagged: {flag.key}: {'; '.join(flag.flags)}")
    lines.extend(_more(flagged_count, LISTED, "flagged"))
    return "\n".join(lines)


def _more(total: int, listed: int, what: str) -> list[str]:
    return [f"  ... and {total - listed} more {what} (batch-inpaint export lists every item)"] if total > listed else []


def when(ts: float | None) -> str:
    """A time as the reports show it, local time to the second."""
    return "never" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _row(item: ItemRecord, out_dir: Path | None) -> dict[str, object]:
    """One item as `export` writes it: paths absolute (the output's from ``out_dir``), times ISO-8601 UTC."""
    row: dict[str, object] = {column: getattr(item, column) for column in EXPORT_COLUMNS}
    row["fixes"] = json.dumps(list(item.fixes)) if item.fixes else None
    row["warnings"] = json.dumps(list(item.warnings)) if item.warnings else None
    row["flags"] = json.dumps(list(item.flags)) if item.flags else None
    if item.output_path and out_dir is not None:
        row["output_path"] = str((out_dir / item.output_path).absolute())
    for column in ("started_at", "finished_at"):
        stamp = getattr(item, column)
        row[column] = None if stamp is None else \
            datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc).isoformat(timespec="milliseconds")
    return row


async def export(store: Store, fmt: str, stream: TextIO, out_dir: Path | None = None) -> int:
    count = 0
    writer = csv.DictWriter(stream, fieldnames=EXPORT_COLUMNS) if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    async for item in store.items():
        row = _row(item, out_dir)
        if writer is not None:
            writer.writerow(row)
        else:
            stream.write(json.dumps(row) + "\n")
        count += 1
    return count


def sharing_report(schedules: list[Schedule], out_dir: Path) -> str:
    """Who shares the key's rate limit with the run writing to ``out_dir``, while it runs."""
    if not schedules:
        return "rate limit: no run is writing to this folder now"
    lines = []
    out = str(out_dir.resolve())
    for schedule in schedules:
        runs = sorted(schedule.members.values(), key=lambda m: (m.out != out, m.host, m.pid))
        lines.append(f"rate limit shared by {len(runs)} run{'s' if len(runs) > 1 else ''} of one key, "
                     f"pacing at most {schedule.ceiling:g}/min:")
        lines.extend(f"  {m.describe()}{' (this folder)' if m.out == out else ''}" for m in runs)
    return "\n".join(lines)
