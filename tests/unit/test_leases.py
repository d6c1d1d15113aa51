"""Leases on a Postgres manifest: two workers (two stores on one job, as on two hosts) never hold one
item at once, and a worker that lost an item records nothing over its new holder."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import AsyncIterator

import pytest
import pytest_asyncio

from batch_inpaint.errors import ConfigError, ManifestError, NoManifest
from batch_inpaint.pairing import FileSig
from batch_inpaint.store import LeaseLost, OutputRecord, SeenItem
from batch_inpaint.store.postgres import PostgresStore

from ..postgres import PG_PASSWORD

pytestmark = pytest.mark.postgres


def seen(key: str) -> SeenItem:
    return SeenItem(key, f"/in/{key}", f"/m/{key}", FileSig(10, 1), FileSig(5, 2), "pending")


def done(store: PostgresStore, key: str, run: int):  # type: ignore[no-untyped-def]
    return store.record_done(key, run, output=OutputRecord(f"{key}.png", "h", 1), credits=Decimal(1),
                             remaining=None, seconds=1.0, fingerprint=None)


@pytest_asyncio.fixture
async def two(postgres, tmp_path: Path) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:  # type: ignore[no-untyped-def]
    a = await PostgresStore.open(postgres.url, str(tmp_path), lease_seconds=0.5)
    b = await PostgresStore.open(postgres.url, str(tmp_path), lease_seconds=0.5)
    yield a, b
    await a.aclose()
    await b.aclose()


@pytest.mark.asyncio
async def test_an_item_is_held_by_one_worker_until_its_lease_runs_out(two) -> None:  # type: ignore[no-untyped-def]
    a, b = two
    run_a, run_b = await a.start_run({}, 1), await b.start_run({}, 2)
    await a.record_seen([seen("x.jpg"), seen("y.jpg")])
    assert a.leases is not None and b.leases is not None
    assert await a.leases.claim("x.jpg", run_a)
    assert not await b.leases.claim("x.jpg", run_b)
    assert not await a.leases.claim("x.jpg", run_a)  # walked twice: sent once
    outlook = await b.leases.outlook(run_b)
    assert (outlook.claimable, outlook.held_by_others) == (1, 1) and 0 < (outlook.soonest_expiry or 0) <= 0.5
    workers = await b.leases.workers()
    assert [(w.run_id, w.leases) for w in workers] == [(run_a, 1), (run_b, 0)]
    await a.leases.renew(run_a)
    await asyncio.sleep(0.7)  # a stops renewing: its lease runs out
    assert await b.leases.claim("x.jpg", run_b)
    assert not await a.leases.holds("x.jpg", run_a)
    with pytest.raises(LeaseLost):  # a's late result is not recorded over b
        await done(a, "x.jpg", run_a)
    await a.release("x.jpg")  # nor is its giving the item back
    await done(b, "x.jpg", run_b)
    row = (await a.lookup(["x.jpg"]))["x.jpg"]
    assert row.status == "done" and (await a.counts()) == {"done": 1, "pending": 1}


@pytest.mark.asyncio
async def test_claims_at_once_give_each_item_to_one_worker(two) -> None:  # type: ignore[no-untyped-def]
    a, b = two
    run_a, run_b = await a.start_run({}, 1), await b.start_run({}, 2)
    keys = [f"k{i:03d}.jpg" for i in range(200)]
    await a.record_seen([seen(k) for k in keys])
    assert a.leases is not None and b.leases is not None
    got_a = await asyncio.gather(*(a.leases.claim(k, run_a) for k in keys))
    got_b = await asyncio.gather(*(b.leases.claim(k, run_b) for k in keys))
    assert all(got_a) and not any(got_b)
    both = await asyncio.gather(a.leases.claim("k000.jpg", run_a), b.leases.claim("k000.jpg", run_b))
    assert not any(both)  # held by a: neither takes it again


@pytest.mark.asyncio
async def test_a_walk_that_read_an_item_before_another_worker_did_it_does_not_undo_it(two) -> None:  # type: ignore[no-untyped-def]
    a, b = two
    run_a = await a.start_run({}, 1)
    await a.record_seen([seen("x.jpg")])
    run_b = await b.start_run({}, 2)  # b walks: x is pending, so due
    assert a.leases is not None
    assert await a.leases.claim("x.jpg", run_a)
    await done(a, "x.jpg", run_a)
    await b.record_seen([seen("x.jpg")])  # b records what it read before a finished
    assert (await b.lookup(["x.jpg"]))["x.jpg"].status == "done"
    assert b.leases is not None and not await b.leases.claim("x.jpg", run_b)


@pytest.mark.asyncio
async def test_reading_a_job_that_is_not_there_writes_nothing_and_says_so(postgres, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NoManifest):
        await PostgresStore.open(postgres.url, f"{tmp_path}/never-run", create=False)
    bad = postgres.url.replace(PG_PASSWORD, "not-the-password-9f2")
    with pytest.raises(ManifestError) as caught:
        await PostgresStore.open(bad, "job")
    assert "not-the-password-9f2" not in str(caught.value) and "password authentication failed" in str(caught.value)


@pytest.mark.asyncio
async def test_two_workers_starting_at_once_on_an_empty_database_both_come_up(postgres) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    async with await psycopg.AsyncConnection.connect(postgres.url, autocommit=True) as admin:
        await admin.execute("DROP DATABASE IF EXISTS fresh_fleet")
        await admin.execute("CREATE DATABASE fresh_fleet")
    url = postgres.url.rsplit("/", 1)[0] + "/fresh_fleet"
    stores = await asyncio.gather(*(PostgresStore.open(url, "job") for _ in range(4)))
    try:
        runs = [await s.start_run({}, i) for i, s in enumerate(stores)]
        assert len(set(runs)) == 4
    finally:
        for s in stores:
            await s.aclose()


@pytest.mark.asyncio
async def test_a_worker_that_lost_an_item_sends_nothing_for_it(two) -> None:  # type: ignore[no-untyped-def]
    """Paused between taking an item and sending it: when it wakes, the item is done by another worker
    (or given back by it), and its request never goes out, at its first attempt or a retry."""
    a, b = two
    run_a, run_b = await a.start_run({}, 1), await b.start_run({}, 2)
    await a.record_seen([seen("x.jpg"), seen("y.jpg")])
    assert a.leases is not None and b.leases is not None
    assert await a.leases.claim("x.jpg", run_a) and await a.leases.claim("y.jpg", run_a)
    assert await a.mark_in_flight("y.jpg", run_a, None) is False  # y's first attempt went out
    await asyncio.sleep(0.7)
    assert await b.leases.claim("x.jpg", run_b) and await b.leases.claim("y.jpg", run_b)
    assert await b.mark_in_flight("x.jpg", run_b, None) is False
    await done(b, "x.jpg", run_b)
    await b.release("y.jpg")
    for key in ("x.jpg", "y.jpg"):
        with pytest.raises(LeaseLost):
            await a.mark_in_flight(key, run_a, None)
    rows = await a.lookup(["x.jpg", "y.jpg"])
    assert (rows["x.jpg"].status, rows["y.jpg"].status) == ("done", "pending")
    assert not await a.leases.claim("x.jpg", run_a)  # done stays done: no one takes it on again


@pytest.mark.asyncio
async def test_a_job_takes_one_output_folder(two) -> None:  # type: ignore[no-untyped-def]
    """The first folder token a job is given stands; a worker with another (a disk of its own where the
    shared volume should be) is refused, and says so without the URL's password."""
    a, b = two
    await a.check_folder("folder-1")
    await b.check_folder("folder-1")
    with pytest.raises(ConfigError, match="must write to the one shared folder") as caught:
        await b.check_folder("folder-2")
    assert PG_PASSWORD not in str(caught.value)


@pytest.mark.asyncio
async def test_a_manifest_of_the_first_schema_is_migrated(postgres) -> None:  # type: ignore[no-untyped-def]
    """Made by the first fleet release (no folder per job): the job's items stay; its next worker's folder
    becomes the job's."""
    import psycopg

    from batch_inpaint.store.postgres import _MIGRATIONS

    async with await psycopg.AsyncConnection.connect(postgres.url, autocommit=True) as admin:
        await admin.execute("DROP DATABASE IF EXISTS schema_one")
        await admin.execute("CREATE DATABASE schema_one")
    url = postgres.url.rsplit("/", 1)[0] + "/schema_one"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as old:
        await old.execute(_MIGRATIONS[1])
        await old.execute("CREATE TABLE batch_inpaint_schema (component text PRIMARY KEY, version integer NOT NULL);"
                          "INSERT INTO batch_inpaint_schema VALUES ('manifest', 1);"
                          "INSERT INTO batch_inpaint_jobs VALUES ('old', 'xxh128', 0);"
                          "INSERT INTO batch_inpaint_items (job, key, status) VALUES ('old', 'a.jpg', 'done')")
    store = await PostgresStore.open(url, "old")
    try:
        assert await store.counts() == {"done": 1}
        await store.check_folder("folder-1")
        with pytest.raises(ConfigError):
            await store.check_folder("folder-2")
    finally:
        await store.aclose()


@pytest.mark.asyncio
async def test_a_look_cut_short_by_a_stopping_run_leaves_the_connection_whole(two, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A stopping run cancels its walk mid-query: the query ends first (psycopg would close a connection
    whose query was cancelled, and with it every later write of the worker, its giving items back too).
    A database that does not answer at all is given up after `SHIELD_SECONDS`, with the reason."""
    import anyio

    from batch_inpaint import pgconn

    a, _ = two
    answer = None
    with anyio.move_on_after(0.05) as scope:
        answer = await a._q("SELECT 7 FROM pg_sleep(0.3)", fetch="one")
    assert scope.cancel_called and answer == (7,)  # the query ended, then the cancellation came
    assert await a.counts() == {}  # the connection still serves
    monkeypatch.setattr(pgconn, "SHIELD_SECONDS", 0.2)
    with anyio.move_on_after(0.05), pytest.raises(ManifestError, match="no answer from the database within 0.2 s"):
        await a._q("SELECT pg_sleep(2)")


@pytest.mark.asyncio
async def test_a_worker_sends_its_first_request_before_its_walk_ends(postgres, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Claims go item by item as pairs are prepared: a fleet's worker starts sending while a large walk
    is still going, as a run alone does."""
    from batch_inpaint.batch import Batch
    from batch_inpaint.engines.fake import FakeEngine
    from batch_inpaint.limiter import Unlimited
    from batch_inpaint.settings import Settings
    from batch_inpaint.synthetic import write_tree

    write_tree(tmp_path / "in", [f"d{i // 100}/p{i:04d}" for i in range(1200)], size=(16, 12))
    walked_at_first_request: list[bool] = []

    def first(request: object) -> None:
        if not walked_at_first_request:
            walked_at_first_request.append(batch.stats.walk_finished)

    store = await PostgresStore.open(postgres.url, str(tmp_path / "out"))
    try:
        settings = Settings(input_dir=tmp_path / "in" / "photos", masks_dir=tmp_path / "in" / "masks",
                            out_dir=tmp_path / "out", rate=60, report=False)
        batch = Batch(settings, engine=FakeEngine([], on_call=first), store=store, limiter=Unlimited())
        await batch.run()
    finally:
        await store.aclose()
    assert walked_at_first_request == [False] and batch.stats.done == 1200
