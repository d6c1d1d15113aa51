"""Progress for people: a live bar on a terminal, plain periodic lines in logs and cron mail."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import anyio

from .stats import RunStats


def _line(stats: RunStats) -> str:
    elapsed = max(1e-6, time.monotonic() - stats.started)
    per_min = stats.requests / elapsed * 60
    total = f"/{stats.seen - stats.already_done - stats.adopted - stats.kept_failed - stats.kept_gave_up}" if stats.walk_finished else ""
    credits = f", credits left {stats.remaining_credits}" if stats.remaining_credits is not None else ""
    return (f"{stats.done + stats.copied + stats.reencoded}{total} done, {stats.failed + stats.invalid} failed, "
            f"{stats.already_done + stats.adopted} already done, {stats.requests} requests ({per_min:.1f}/min){credits}"
            f"{_limited(stats)}")


def _limited(stats: RunStats) -> str:
    """Said while the server's limit holds the run back: how often, and the pace it allows."""
    if not stats.rate_limited:
        return ""
    paused = stats.paused_until - anyio.current_time()
    pace = f", pacing at {stats.pace:.0f}/min" if stats.pace is not None else ""
    return f"; rate-limited ({stats.rate_limited} x 429){pace}" + (f", paused {paused:.0f} s" if paused >= 1 else "")


def new_notices(stats: RunStats) -> list[str]:
    """Notices not shown yet; each is shown once, live or in the summary. Then, with --verbose, the
    items settled since the last call."""
    fresh = [f"note: {text}" for text in stats.notices[stats.notices_shown:]]
    stats.notices_shown = len(stats.notices)
    fresh += stats.events
    stats.events = []
    return fresh


class PlainProgress:
    """A line every ``every`` seconds on ``stream`` (stderr): readable in a log file."""

    def __init__(self, stream: TextIO = sys.stderr, every: float = 10.0) -> None:
        self.stream = stream
        self.every = every

    async def watch(self, stats: RunStats) -> None:
        next_line = anyio.current_time() + self.every
        while True:
            await anyio.sleep(min(0.5, self.every))
            for text in new_notices(stats):
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
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("[bold]inpainting"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeRemainingColumn(), TextColumn("{task.fields[detail]}"))
        with Progress(*columns, console=self.console, transient=True) as bar:
            task = bar.add_task("items", total=None, detail="")
            while True:
                finished = stats.finished - stats.no_mask
                bar.update(task, completed=finished, total=stats.due if stats.walk_finished else None,
                           detail=_line(stats))
                for text in new_notices(stats):
                    bar.console.print(text, markup=False, highlight=False)
                await anyio.sleep(0.25)


def choose(mode: str, stream: TextIO = sys.stderr) -> PlainProgress | BarProgress | None:
    if mode == "none":
        return None
    if mode == "bar" or (mode == "auto" and stream.isatty()):
        return BarProgress(stream)
    return PlainProgress(stream)
