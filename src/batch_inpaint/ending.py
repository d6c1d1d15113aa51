"""The end of a run (or of a pass of `watch`), as the command line tells it: the summary and the
report's path for people (a run's events for machines, ``run_ended`` among them, come from the run)."""

from __future__ import annotations

import sys
from typing import Callable

from .events import JsonLines
from .reports import summary, summary_json
from .runner import RunResult
from .settings import Settings
from .watching import Watch


class Ending:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sink = JsonLines() if settings.log_format == "json" else None
        self.watch: Watch | None = None
        self._notes_shown = 0

    def say(self, text: str, level: str = "info") -> None:
        if self.sink is not None:
            self.sink("notice", level, {"message": text})
        else:
            print(f"batch-inpaint: {text}", file=sys.stderr, flush=True)

    def on_watch(self, started: list[object]) -> Callable[[Watch], None]:
        """`watch_batch`'s ``on_start``: keeps the watch for the signal handler, and says it started."""
        def on_start(watch: Watch) -> None:
            started.append(watch)
            self.watch = watch
            s = self.settings
            if self.sink is not None:
                self.sink("watch_started", "info", {"input": str(s.input_dir), "out": str(s.out_dir),
                                                     "settle_seconds": s.settle, "polling": watch.polling})
            else:
                how = "polling" if watch.polling else "file system events"
                self.say(f"watching {s.input_dir} ({how}; a file is taken once unchanged for {s.settle:g} s); "
                         "Ctrl-C or SIGTERM stops")
        return on_start

    async def finished(self, result: RunResult) -> None:
        """The text a person reads at the end of a run or a pass (events for machines come from the run)."""
        stats, s = result.stats, self.settings
        if self.watch is not None:
            for note in self.watch.notes[self._notes_shown:]:
                self.say(note, "warning")
            self._notes_shown = len(self.watch.notes)
        if result.idle:
            return
        if self.sink is None:
            for text in stats.events:  # --verbose: the items settled since the display last looked
                print(f"batch-inpaint: {text}", file=sys.stderr)
            stats.events = []
            print(summary(stats, result.exit_code, result.stop_reason, local=s.engine == "local"), file=sys.stderr,
                  flush=True)
            if result.report is not None:
                print(f"batch-inpaint: report: {result.report.absolute()}", file=sys.stderr, flush=True)
        if s.summary == "json":
            print(summary_json(stats, result.exit_code, result.stop_reason, result.report), flush=True)

    def watch_stopped(self, code: int) -> None:
        passes = self.watch.passes if self.watch is not None else 0
        if self.sink is not None:
            self.sink("watch_stopped", "info", {"exit_code": code, "passes": passes})
        else:
            self.say(f"watch stopped after {passes} pass{'' if passes == 1 else 'es'}; exit code {code}")
