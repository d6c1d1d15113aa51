"""Progress: a live bar on a terminal; in logs and cron mail, a line a minute and each failure as it
happens; with ``--log-format json``, a progress event a minute (`events`)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import anyio

from .stats import RunStats


def _counts(stats: RunStats) -> str:
    """What became of the items settled so far; failed and invalid apart, as the summary has them."""
    done = stats.done + stats.copied + stats.reencoded
    parts = [f"{done} done"]
    parts += [f"{n} {what}" for n, what in ((stats.failed, "failed"), (stats.invalid, "invalid")) if n]
    return ", ".join(parts)


def _settled(stats: RunStats) -> int:
    return stats.due - stats.left


def _credits(stats: RunStats) -> str:
    return f", {stats.remaining_credits} credits left" if stats.remaining_credits is not None else ""


def _line(stats: RunStats) -> str:
    """One plain line: how far (or how much the walk found so far), what became of the items, the rate."""
    elapsed = max(1e-6, time.monotonic() - stats.started)
    per_min = stats.requests / elapsed * 60
    where = f"{_settled(stats)}/{stats.due}" if stats.walk_finished else f"walking… {stats.seen} found, {_settled(stats)}"
    already = f", {stats.already_done + stats.adopted} already done" if stats.already_done + stats.adopted else ""
    return (f"{where} settled: {_counts(stats)}{already}, {stats.requests} requests ({per_min:.1f}/min)"
            f"{_credits(stats)}{_limited(stats)}")


def _limited(stats: RunStats) -> str:
    """Said while the server's limit holds the run back: how often, and the pace it allows."""
    if not stats.rate_limited:
        return ""
    paused = stats.paused_until - anyio.current_time()
    pace = f", pacing at {stats.pace:.0f}/min" if stats.pace is not None else ""
    return f"; rate-limited ({stats.rate_limited} x 429){pace}" + (f", paused {paused:.0f} s" if paused >= 1 else "")


def bar_fields(stats: RunStats) -> tuple[str, int, int | None, str]:
    """The bar's description, completed, total (None while the walk goes on) and a short detail that
    leaves the bar and its ETA room on an 80-column terminal."""
    description = "inpainting" if stats.walk_finished else f"walking… {stats.seen} found"
    detail = _counts(stats).replace(" done", " ok")
    elapsed = max(1e-6, time.monotonic() - stats.started)
    if stats.requests:
        detail += f" · {stats.requests / elapsed * 60:.0f}/min"
    if stats.remaining_credits is not None:
        detail += f" · {stats.remaining_credits} cr"
    if stats.rate_limited:
        detail += f" · 429×{stats.rate_limited}" + (f" @{stats.pace:.0f}/min" if stats.pace is not None else "")
    return description, _settled(stats), stats.due if stats.walk_finished else None, detail


def new_notices(stats: RunStats) -> list[str]:
    """Notices not shown yet; each is shown once, live or in the summary. Then, with --verbose, the
    items settled since the last call."""
    fresh = [f"note: {text}" for text in stats.notices[stats.notices_shown:]]
    stats.notices_shown = len(stats.notices)
    fresh += stats.events
    stats.events = []
    return fresh


def new_problems(stats: RunStats) -> list[str]:
    """Items failed or invalid since the last call (as many as the summary lists), one line each."""
    fresh = stats.problems[stats.problems_shown:]
    stats.problems_shown = len(stats.problems)
    return [f"{status}: {key}: {reason}" for key, status, reason in fresh]


class PlainProgress:
    """Quiet enough for cron mail and log files: a line every ``every`` seconds on ``stream`` (stderr),
    the notices and each failure as they happen, then the summary."""

    def __init__(self, stream: TextIO = sys.stderr, every: float = 60.0) -> None:
        self.stream = stream
        self.every = every

    async def watch(self, stats: RunStats) -> None:
        next_line = anyio.current_time() + self.every
        while True:
            await anyio.sleep(min(0.5, self.every))
            # with --verbose the failures are among the items' own lines already
            fresh = new_notices(stats) + ([] if stats.verbose else new_problems(stats))
            for text in fresh:
                print(f"batch-inpaint: {text}", file=self.stream, flush=True)
            if anyio.current_time() >= next_line:
                next_line += self.every
                print(f"batch-inpaint: {_line(stats)}", file=self.stream, flush=True)


class BarProgress:
    """A rich progress bar: done out of due (growing while the walk goes on), rate, ETA, credits left."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        from rich.console import Console  # loaded only for a terminal: cron and scripts start faster

        self.console = Console(file=stream)

    async def watch(self, stats: RunStats) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                   TimeRemainingColumn(), TextColumn("{task.fields[detail]}"))
        with Progress(*columns, console=self.console, transient=True) as bar:
            task = bar.add_task("walking…", total=None, detail="")
            while True:
                description, completed, total, detail = bar_fields(stats)
                bar.update(task, description=description, completed=completed, total=total, detail=detail)
                for text in new_notices(stats):
                    bar.console.print(text, markup=False, highlight=False)
                await anyio.sleep(0.25)


class JsonProgress:
    """A ``progress`` event every ``every`` seconds; items and notices are events of their own."""

    def __init__(self, every: float = 60.0) -> None:
        self.every = every

    async def watch(self, stats: RunStats) -> None:
        while True:
            await anyio.sleep(self.every)
            elapsed = max(1e-6, time.monotonic() - stats.started)
            stats.emit("progress", settled=_settled(stats), due=stats.due, walk_finished=stats.walk_finished,
                       requests=stats.requests, per_minute=round(stats.requests / elapsed * 60, 2),
                       credits_used=stats.credits_used, remaining_credits=stats.remaining_credits)


def choose(mode: str, stream: TextIO = sys.stderr, log_format: str = "text"
           ) -> PlainProgress | BarProgress | JsonProgress | None:
    if log_format == "json":  # stderr holds JSON lines only
        return JsonProgress()
    if mode == "none":
        return None
    if mode == "bar" or (mode == "auto" and stream.isatty()):
        return BarProgress(stream)
    return PlainProgress(stream)
