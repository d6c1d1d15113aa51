"""The store contract: one suite, every store. A new store (Postgres, say) joins by adding a factory."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import AsyncIterator, Callable

import pytest
import pytest_asyncio

from batch_inpaint.errors import ManifestError
from batch_inpaint.pairing import FileSig
from batch_inpaint.store import (
    ANSWER_IN_OUTPUT, BRIEF_COLUMNS, AnswerSource, Fingerprint, MemoryStore, OutputRecord, RunEnd, SeenItem, SqliteStore, Store,
)

FACTORIES: dict[str, Callable[[Path], Store]] = {
    "sqlite": lambda tmp: SqliteStore(tmp / "m" / "manifest.sqlite3"),
    "memory": lambda tmp: MemoryStore(),
}
FP = Fingerprint("ih", "mh", "sh", "ck", ("resized the mask",), (), "rq")


@pytest_asyncio.fixture(params=[*sorted(FACTORIES), pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "postgres":  # a job of its own in the session's database
        from batch_inpaint.store.postgres import PostgresStore

        # leases of no length: an item is anyone's to claim again, as after a crash
        made: Store = await PostgresStore.open(request.getfixturevalue("postgres").url, job=str(tmp_path),
                                               lease_seconds=0.0)
    else:
        made = FACTORIES[request.param](tmp_path)
    yield made
    await made.aclose()


def seen(key: str, status: str = "pending", size: int = 10) -> SeenItem:
    return SeenItem(key, f"/in/{key}", f"/m/{key}", FileSig(size, 1), FileSig(5, 2), status)


async def send(store: Store, key: str, run: int, fingerprint: Fingerprint | None = FP) -> bool:
    """An item's first request, as a run makes it: a store with leases sends only what the run claimed."""
    if store.leases is not None:
        assert await store.leases.claim(key, run)
    return await store.mark_in_flight(key, run, fingerprint)


@pytest.mark.asyncio
async def test_briefs_are_the_rows_a_rerun_compares(store: Store) -> None:
    """Keys walked a folder at a time, with another folder's many keys sorting between them (a.jpg,
    then m/*, then z.jpg): every asked key is found, with its row's `BRIEF_COLUMNS`."""
    await store.record_seen([seen("a.jpg"), seen("z.jpg", "no_mask", size=7)])
    await store.record_seen([seen(f"m/{i:04d}.jpg") for i in range(1200)])
    asked = ["a.jpg", "z.jpg", "gone.jpg"]
    briefs = await store.briefs(asked)
    rows = await store.lookup(asked)
    assert {k: briefs[k] for k in asked if k in briefs} == {
        k: tuple(getattr(rows[k], c) for c in BRIEF_COLUMNS) for k in ("a.jpg", "z.jpg")}
    assert briefs["z.jpg"] == ("no_mask", None, None, 7, 1, 5, 2)
    folder = [f"m/{i:04d}.jpg" for i in range(600, 1100)]
    assert set(folder) <= set(await store.briefs(folder))


@pytest.mark.asyncio
async def test_walked_items_are_recorded_and_looked_up(store: Store) -> None:
    await store.record_seen([seen("a.jpg"), seen("b.jpg", "no_mask"), seen("c.jpg", "invalid")])
    rows = await store.lookup(["a.jpg", "b.jpg", "zz.jpg"])
    assert set(rows) == {"a.jpg", "b.jpg"}
    assert rows["a.jpg"].status == "pending" and rows["a.jpg"].image_size == 10 and rows["a.jpg"].mask_mtime_ns == 2
    assert await store.counts() == {"pending": 1, "no_mask": 1, "invalid": 1}
    await store.record_seen([seen("a.jpg", size=11)])  # seen again, changed
    assert (await store.lookup(["a.jpg"]))["a.jpg"].image_size == 11
    await store.refresh_signatures("a.jpg", FileSig(12, 3), None)
    row = (await store.lookup(["a.jpg"]))["a.jpg"]
    assert (row.image_size, row.image_mtime_ns, row.mask_size) == (12, 3, None)


@pytest.mark.asyncio
async def test_an_item_goes_in_flight_then_done(store: Store) -> None:
    run = await store.start_run({"rate": 60}, 123)
    await store.record_seen([seen("a.jpg")])
    assert await send(store, "a.jpg", run) is False
    await store.note_attempt_failure("a.jpg", error_status=503, error="busy", possibly_charged=False)
    assert await store.mark_in_flight("a.jpg", run, None) is False  # a retry in the same run
    await store.record_seen([seen("a.jpg")])  # a walk never takes an item out of flight
    assert (await store.lookup(["a.jpg"]))["a.jpg"].status == "in_flight"
    await store.record_done("a.jpg", run, output=OutputRecord("a.png", "oh", 99), credits=Decimal(1),
                            remaining=Decimal(41), seconds=1.5, fingerprint=None)
    row = (await store.lookup(["a.jpg"]))["a.jpg"]
    assert (row.status, row.output_path, row.output_size, row.image_hash, row.settings_hash) == (
        "done", "a.png", 99, "ih", "sh")
    [item] = [i async for i in store.items()]
    assert (item.attempts, item.sends, item.credits, item.error, item.fixes) == (2, 2, "1", None, ("resized the mask",))
    assert await store.credits_spent() == Decimal(1)


@pytest.mark.asyncio
async def test_an_item_left_in_flight_by_an_earlier_run_counts_as_resent(store: Store) -> None:
    first = await store.start_run({}, 1)
    await store.record_seen([seen("a.jpg")])
    await send(store, "a.jpg", first)  # then the process was killed
    second = await store.start_run({}, 2)
    assert await send(store, "a.jpg", second) is True
    [item] = [i async for i in store.items()]
    assert item.possibly_charged == 1 and item.sends == 2


@pytest.mark.asyncio
async def test_failures_releases_and_problems(store: Store) -> None:
    run = await store.start_run({}, 1)
    await store.record_seen([seen(k) for k in ("a.jpg", "b.jpg", "c.jpg", "d.jpg")])
    await store.record_failure("a.jpg", status="failed", error="HTTP 400: bad", error_status=400, settings_hash="sh")
    await store.record_failure("b.jpg", status="invalid", error="truncated", error_status=None, settings_hash="sh")
    await send(store, "c.jpg", run)
    await store.release("c.jpg", error="the API rejected the key", error_status=403)
    await store.release("d.jpg")
    assert await store.counts() == {"failed": 1, "invalid": 1, "pending": 2}
    problems = await store.problems(10)
    assert [(p.key, p.status, p.error_status, p.error) for p in problems] == [
        ("a.jpg", "failed", 400, "HTTP 400: bad"), ("b.jpg", "invalid", None, "truncated")]
    assert [p.key for p in await store.problems(1)] == ["a.jpg"]
    items = {i.key: i async for i in store.items()}
    assert (items["c.jpg"].status, items["c.jpg"].error_status) == ("pending", 403)
    assert items["a.jpg"].finished_at is not None


@pytest.mark.asyncio
async def test_transient_failures_count_the_runs_in_a_row(store: Store) -> None:
    await store.record_seen([seen("a.jpg"), seen("b.jpg")])
    for _ in range(2):
        await store.record_failure("a.jpg", status="failed", error="HTTP 503", error_status=503, settings_hash="sh",
                                   transient=True)
    await store.record_failure("b.jpg", status="failed", error="HTTP 400", error_status=400, settings_hash="sh")
    rows = await store.lookup(["a.jpg", "b.jpg"])
    assert (rows["a.jpg"].failed_runs, rows["b.jpg"].failed_runs) == (2, 0)
    run = await store.start_run({}, 3)
    await store.record_seen([seen("a.jpg")])  # the next run: due again
    await send(store, "a.jpg", run)
    await store.record_done("a.jpg", run, output=OutputRecord("a.png", "h", 1), credits=Decimal(1), remaining=None,
                            seconds=1.0, fingerprint=None)
    assert (await store.lookup(["a.jpg"]))["a.jpg"].failed_runs == 0  # done: the count starts again


@pytest.mark.asyncio
async def test_answers_paid_for_are_found_by_their_request(store: Store) -> None:
    first = await store.start_run({}, 1)
    await store.record_seen([seen("a.jpg"), seen("b.jpg"), seen("e.jpg")])
    assert await store.find_answer("rq", None) is None
    await send(store, "a.jpg", first)
    assert await store.find_answer("rq", None) is None  # in flight: no answer yet
    await store.record_done("a.jpg", first, output=OutputRecord("a.png", "oh", 9), credits=Decimal(1),
                            remaining=None, seconds=None, fingerprint=None, answer=ANSWER_IN_OUTPUT)
    assert await store.find_answer("rq", None) == AnswerSource("a.jpg", "rq", ANSWER_IN_OUTPUT, "a.png", "oh")
    assert await store.find_answer("other request", None) is None
    assert await store.find_answer("rq", first + 1) is None  # --force: only this run's answers
    await store.start_run({}, 2)  # a later run, with another output format
    await store.record_seen([seen("a.jpg")])  # due again: its answer still counts
    assert (await store.find_answer("rq", None)) is not None
    await send(store, "b.jpg", first, Fingerprint("i2", "m2", "sh", "ck2", request_hash="rq2"))
    await store.record_done("b.jpg", first, output=OutputRecord("b.jpg", "bh", 9), credits=Decimal(1),
                            remaining=None, seconds=None, fingerprint=None, answer=None)
    assert await store.find_answer("rq2", None) is None  # a lossy output whose answer was not kept
    await store.record_empty_mask("e.jpg", Fingerprint("i2", "m2", "sh", "ck2"), None)
    assert (await store.counts()) == {"done": 1, "pending": 1, "empty_mask": 1}


@pytest.mark.asyncio
async def test_flags_go_with_a_done_result_and_leave_with_it(store: Store) -> None:
    run = await store.start_run({}, 1)
    await store.record_seen([seen("a.jpg"), seen("b.jpg"), seen("c.jpg")])
    for key, flags in (("a.jpg", ("flat_fill: flat",)), ("b.jpg", ()), ("c.jpg", ("unchanged: same", "large_mask: 80%"))):
        await send(store, key, run)
        await store.record_done(key, run, output=OutputRecord(key[0] + ".png", "h", 1), credits=Decimal(1),
                                remaining=None, seconds=None, fingerprint=None)
        await store.record_flags(key, flags)
    count, listed = await store.flagged(1)
    assert count == 2 and [(f.key, f.output_path, f.flags) for f in listed] == [("a.jpg", "a.png", ("flat_fill: flat",))]
    assert {item.key: item.flags async for item in store.items()} == {
        "a.jpg": ("flat_fill: flat",), "b.jpg": (), "c.jpg": ("unchanged: same", "large_mask: 80%")}
    # the next run sends two again; one fails: the old result's flags are no longer the item's
    run = await store.start_run({}, 2)
    await store.record_seen([seen("a.jpg"), seen("c.jpg")])
    await send(store, "c.jpg", run)
    await store.record_failure("c.jpg", status="failed", error="HTTP 400", error_status=400, settings_hash="sh")
    await send(store, "a.jpg", run)
    await store.record_done("a.jpg", run, output=OutputRecord("a.png", "h2", 1), credits=Decimal(1), remaining=None,
                            seconds=None, fingerprint=None)
    assert await store.flagged(10) == (0, [])
    assert {item.key: item.flags async for item in store.items()} == {"a.jpg": (), "b.jpg": (), "c.jpg": ()}
    await store.record_flags("c.jpg", ("late: a look that ends after its item failed",))
    assert await store.flagged(10) == (0, [])  # only a done result carries flags


@pytest.mark.asyncio
async def test_runs_are_recorded_with_their_end(store: Store) -> None:
    run = await store.start_run({"rate": 60.0, "out_dir": "/o"}, 77)
    await store.end_run(run, RunEnd({"done": 3}, Decimal("2.5"), Decimal(40), 4, 1, 1, retries=6, rate_limited=2))
    unfinished = await store.start_run({}, 78)
    first, second = await store.runs()
    assert (first.id, first.pid, first.settings["rate"], first.counts, first.credits_used) == (
        run, 77, 60.0, {"done": 3}, Decimal("2.5"))
    assert (first.remaining_credits, first.requests, first.possibly_charged_twice, first.exit_code) == (Decimal(40), 4, 1, 1)
    assert (first.retries, first.rate_limited) == (6, 2)
    assert first.ended_at is not None and second.id == unfinished and second.ended_at is None and second.exit_code is None


@pytest.mark.asyncio
async def test_sqlite_errors_become_manifest_errors_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "manifest.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ManifestError, match="manifest.sqlite3"):
        SqliteStore(path)
    with pytest.raises(ManifestError, match="cannot open"):
        SqliteStore(tmp_path / "missing.sqlite3", create=False)
    assert not (tmp_path / "missing.sqlite3").exists()  # opening to read never creates one


@pytest.mark.asyncio
async def test_sqlite_store_keeps_what_it_recorded_across_opens(tmp_path: Path) -> None:
    path = tmp_path / "manifest.sqlite3"
    first = SqliteStore(path)
    await first.record_seen([seen("a.jpg")])
    await first.aclose()
    again = SqliteStore(path, create=False)
    assert set(await again.lookup(["a.jpg"])) == {"a.jpg"}
    await again.aclose()


@pytest.mark.asyncio
async def test_a_manifest_of_the_first_schema_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    from batch_inpaint.store.schema import migrations

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(migrations[1])
        db.execute("INSERT INTO items (key, status) VALUES ('a.jpg', 'failed')")
        db.execute("PRAGMA user_version = 1")
    with pytest.raises(ManifestError, match="older batch-inpaint: a run with this version upgrades it"):
        SqliteStore(path, create=False)  # reading (status, export, plan) changes nothing, not even the schema
    store = SqliteStore(path)
    try:
        assert (await store.lookup(["a.jpg"]))["a.jpg"].failed_runs == 0
        assert [item.flags async for item in store.items()] == [()]  # a column of schema 4
        assert await store.flagged(5) == (0, [])
    finally:
        await store.aclose()


@pytest.mark.asyncio
async def test_a_manifest_keeps_the_hash_algorithm_it_was_made_with(tmp_path: Path) -> None:
    """A new manifest knows files by XXH128; one made before it keeps SHA-256, so nothing in it looks new."""
    import sqlite3

    from batch_inpaint.store.schema import migrations

    fresh = SqliteStore(tmp_path / "new.sqlite3")
    assert fresh.content_hash == "xxh128"
    await fresh.aclose()
    assert SqliteStore(tmp_path / "new.sqlite3", create=False).content_hash == "xxh128"

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        for version in (1, 2):
            db.executescript(migrations[version])
        db.execute("PRAGMA user_version = 2")
    old = SqliteStore(path)
    assert old.content_hash == "sha256"
    await old.aclose()
    assert SqliteStore(path).content_hash == "sha256"  # and stays so
