"""Metrics for Prometheus: the run and its manifest in the text format node_exporter's textfile
collector reads (``--metrics-file``), written whole during the run
and at its end. Every sample carries the output folder as its ``out`` label, so files of several jobs
in one collector folder never clash. README lists the metrics.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import anyio

from .buckets import Location
from .output import write_atomic
from .stats import RunStats
from .store import STATUSES, Store

#: This run's outcomes, as `RunStats.counts` names them.
RUN_OUTCOMES = ("done", "copied", "reencoded", "adopted", "already_done", "failed", "invalid", "empty_mask",
                "no_mask", "kept_failed", "kept_gave_up")


class MetricsFile:
    """Started with the run (`watch`), written every ``every`` seconds and by `write` at its end."""

    def __init__(self, path: Path, store: Store, stats: RunStats, out_dir: Location, every: float) -> None:
        self.path = path
        self.store = store
        self.stats = stats
        self.out = str(out_dir.absolute())
        self.every = every
        self.started_at = time.time()
        #: What the runs before this one left (credits remaining, last success, last exit code):
        #: read once, not at every write of a long run or watch.
        self._before: tuple[Decimal | None, float | None, int | None] | None = None

    async def watch(self) -> None:
        while True:
            await self.write()
            await anyio.sleep(self.every)

    async def write(self, exit_code: int | None = None) -> None:
        """Write the file now; ``exit_code`` when the run has ended. Errors become a notice: metrics
        never stop a run."""
        try:
            text = await self.render(exit_code)
            # renamed over the file, no fsync: the next write remakes it after a crash; the temporary
            # file's name does not end in .prom, so the collector never reads it
            await anyio.to_thread.run_sync(lambda: write_atomic(self.path, text.encode(), durable=False))
        except Exception as exc:  # noqa: BLE001 - a full disk or a closed store: say so once, go on
            self.stats.notice(f"the metrics file {self.path} could not be written: {exc}")

    async def render(self, exit_code: int | None = None) -> str:
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        counts = await self.store.counts()
        spent = await self.store.credits_spent()
        if self._before is None:
            ended = [r for r in await self.store.runs() if r.exit_code is not None and r.ended_at is not None]
            self._before = (
                next((r.remaining_credits for r in reversed(ended) if r.remaining_credits is not None), None),
                max((r.ended_at for r in ended if r.exit_code == 0 and r.ended_at is not None), default=None),
                ended[-1].exit_code if ended else None)
        remaining_before, success_before, code_before = self._before
        s, label, ended_now = self.stats, ["out"], exit_code is not None
        now = time.time()
        remaining = s.remaining_credits if s.remaining_credits is not None else remaining_before
        last_success = now if exit_code == 0 else success_before
        shown_code = exit_code if ended_now else code_before

        def gauge(name: str, doc: str, value: float | Decimal | None) -> Iterator[Any]:
            if value is not None:
                g = GaugeMetricFamily(name, doc, labels=label)
                g.add_metric([self.out], float(value))
                yield g

        def counter(name: str, doc: str, value: float | Decimal) -> Iterator[Any]:
            c = CounterMetricFamily(name, doc, labels=label)
            c.add_metric([self.out], float(value))
            yield c

        def families() -> Iterator[Any]:
            items = GaugeMetricFamily("batch_inpaint_items", "Items in the manifest, by status",
                                      labels=["out", "status"])
            for status in STATUSES:
                items.add_metric([self.out, status], counts.get(status, 0))
            yield items
            outcomes = GaugeMetricFamily("batch_inpaint_run_items", "Items of this run, by outcome",
                                         labels=["out", "outcome"])
            run_counts = s.counts()
            for outcome in RUN_OUTCOMES:
                outcomes.add_metric([self.out, outcome], run_counts[outcome])
            yield outcomes
            yield from counter("batch_inpaint_credits_used", "Credits used by all runs of the manifest", spent)
            yield from gauge("batch_inpaint_run_credits_used", "Credits used by this run", s.credits_used)
            yield from gauge("batch_inpaint_credits_remaining", "Credits left, as the API last said", remaining)
            yield from counter("batch_inpaint_requests", "Requests sent by this run", s.requests)
            yield from counter("batch_inpaint_retries", "Requests of this run sent again after a failed one",
                               s.retries)
            yield from counter("batch_inpaint_rate_limited", "429 answers this run had", s.rate_limited)
            yield from gauge("batch_inpaint_running", "1 while the run goes on, 0 once it ended", 0 if ended_now else 1)
            yield from gauge("batch_inpaint_run_start_timestamp_seconds", "When this run started",
                             self.started_at)
            yield from gauge("batch_inpaint_run_end_timestamp_seconds", "When this run ended",
                             now if ended_now else None)
            yield from gauge("batch_inpaint_run_duration_seconds", "How long this run took (so far, while it "
                             "goes on)", now - self.started_at)
            yield from gauge("batch_inpaint_last_success_timestamp_seconds", "When the last run that exited 0 "
                             "ended", last_success)
            yield from gauge("batch_inpaint_exit_code", "This run's exit code once it ended; before, the last "
                             "run's", shown_code)

        class Collector:
            def collect(self) -> Iterator[Any]:
                return families()

        registry = CollectorRegistry(auto_describe=False)
        registry.register(Collector())
        return generate_latest(registry).decode()

