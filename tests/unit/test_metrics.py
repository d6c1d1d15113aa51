"""The metrics file: Prometheus' text format, parsed by its own parser, with the manifest's counts."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from batch_inpaint.metrics import MetricsFile
from batch_inpaint.stats import RunStats
from batch_inpaint.store import STATUSES, MemoryStore, OutputRecord, RunEnd
from batch_inpaint.store.base import Fingerprint, SeenItem


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def _store() -> MemoryStore:
    store = MemoryStore()
    first = await store.start_run({}, 1)
    await store.end_run(first, RunEnd({}, Decimal(2), Decimal(98), 2, 0, 0, 0, 0))
    run = await store.start_run({}, 2)
    await store.record_seen([SeenItem(k, f"/in/{k}", None, None, None, "pending") for k in ("a.jpg", "b.jpg", "c.jpg")])
    await store.mark_in_flight("a.jpg", run, Fingerprint("i", "m", "s", "c"))
    await store.record_done("a.jpg", run, output=OutputRecord("a.png", "h", 1), credits=Decimal(1),
                            remaining=Decimal(97), seconds=1.0, fingerprint=None)
    await store.record_failure("b.jpg", status="failed", error="HTTP 500", error_status=500, settings_hash="s")
    return store


@pytest.mark.asyncio
async def test_during_and_after_a_run_the_file_parses_and_counts_what_the_manifest_holds(tmp_path: Path) -> None:
    store = await _store()
    stats = RunStats(done=1, failed=1, requests=9, retries=7, rate_limited=3, credits_used=Decimal(1))
    path = tmp_path / "batch_inpaint.prom"
    metrics = MetricsFile(path, store, stats, tmp_path / "out", 15.0)
    out = (("out", str((tmp_path / "out").absolute())),)

    await metrics.write()
    during = samples(path.read_text())
    assert during[("batch_inpaint_running", out)] == 1
    assert ("batch_inpaint_run_end_timestamp_seconds", out) not in during
    assert during[("batch_inpaint_exit_code", out)] == 0  # the last run's, until this one ends
    counts = await store.counts()
    for status in STATUSES:  # a status no item has yet is 0, not a series that appears later
        assert during[("batch_inpaint_items", out + (("status", status),))] == counts.get(status, 0)
    assert during[("batch_inpaint_items", out + (("status", "invalid"),))] == 0
    assert during[("batch_inpaint_credits_used_total", out)] == float(await store.credits_spent())
    assert during[("batch_inpaint_credits_remaining", out)] == 98  # the API's last word, from the last run
    assert during[("batch_inpaint_requests_total", out)] == 9
    assert during[("batch_inpaint_retries_total", out)] == 7
    assert during[("batch_inpaint_rate_limited_total", out)] == 3
    assert during[("batch_inpaint_run_items", out + (("outcome", "failed"),))] == 1
    success = during[("batch_inpaint_last_success_timestamp_seconds", out)]

    await metrics.write(exit_code=1)
    after = samples(path.read_text())
    assert after[("batch_inpaint_running", out)] == 0 and after[("batch_inpaint_exit_code", out)] == 1
    assert after[("batch_inpaint_run_end_timestamp_seconds", out)] >= after[("batch_inpaint_run_start_timestamp_seconds", out)]
    assert after[("batch_inpaint_last_success_timestamp_seconds", out)] == success  # a failed run is no success
    await metrics.write(exit_code=0)
    assert samples(path.read_text())[("batch_inpaint_last_success_timestamp_seconds", out)] > success
    assert not [p for p in tmp_path.iterdir() if p.name != "batch_inpaint.prom"]  # no temporary file left
    for name, _ in after:
        assert name.startswith("batch_inpaint_")


@pytest.mark.asyncio
async def test_a_file_that_cannot_be_written_is_a_notice_never_the_runs_failure(tmp_path: Path) -> None:
    stats = RunStats()
    metrics = MetricsFile(tmp_path / "no-such-folder" / "x" / "m.prom", await _store(), stats, tmp_path, 15.0)
    (tmp_path / "no-such-folder").write_text("a file where a folder should be")
    await metrics.write()
    assert len(stats.notices) == 1 and "could not be written" in stats.notices[0]
