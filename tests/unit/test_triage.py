from __future__ import annotations

import os
from pathlib import Path

import pytest

from batch_inpaint.pairing import FileSig, Pair
from batch_inpaint.settings import Settings
from batch_inpaint.store import ItemRow, MemoryStore
from batch_inpaint.synthetic import write_tree
from batch_inpaint.triage import Decision, OutputIndex, Slice, Triage, decide, walked_chunks

SIG, MSIG = FileSig(100, 5), FileSig(20, 6)


def row(status: str = "done", **changes: object) -> ItemRow:
    values: dict[str, object] = dict(key="a.jpg", status=status, image_size=100, image_mtime_ns=5, image_hash="h",
                                     mask_size=20, mask_mtime_ns=6, mask_hash="m", settings_hash="s",
                                     output_path="a.png", output_size=3)
    values.update(changes)
    return ItemRow(**values)  # type: ignore[arg-type]


@pytest.fixture
def outputs(tmp_path: Path) -> OutputIndex:
    (tmp_path / "a.png").write_bytes(b"png")
    return OutputIndex(tmp_path)


def test_decisions(outputs: OutputIndex) -> None:
    pair = Pair("a.jpg", "/in/a.jpg", "/m/a.png", "a", SIG, MSIG)
    d = lambda r, **kw: decide(pair, r, settings_hash="s", outputs=outputs, **kw)  # noqa: E731
    assert d(None) is Decision.DUE
    assert d(row()) is Decision.SKIP
    assert d(row(), force=True) is Decision.DUE
    assert d(row(image_mtime_ns=4)) is Decision.CHECK_HASH
    assert d(row(settings_hash="other")) is Decision.DUE
    assert d(row(output_path="gone.png")) is Decision.DUE
    assert d(row("in_flight")) is Decision.DUE and d(row("pending")) is Decision.DUE
    assert d(row("failed")) is Decision.SKIP
    assert d(row("failed"), retry_failed=True) is Decision.DUE
    assert d(row("failed", mask_size=21)) is Decision.DUE
    assert d(row("empty_mask")) is Decision.SKIP


def test_transient_failures_are_retried_by_the_next_runs_up_to_a_limit(outputs: OutputIndex) -> None:
    pair = Pair("a.jpg", "/in/a.jpg", "/m/a.png", "a", SIG, MSIG)
    d = lambda r, **kw: decide(pair, r, settings_hash="s", outputs=outputs, **kw)  # noqa: E731
    assert d(row("failed", failed_runs=1)) is Decision.DUE
    assert d(row("failed", failed_runs=2)) is Decision.DUE
    assert d(row("failed", failed_runs=3)) is Decision.SKIP  # three runs in a row: wait for --retry-failed
    assert d(row("failed", failed_runs=3), retry_failed=True) is Decision.DUE
    assert d(row("failed", failed_runs=1), retry_runs=1) is Decision.SKIP
    assert d(row("failed", failed_runs=0)) is Decision.SKIP  # refused by the API: waits for a change
    assert d(row("invalid")) is Decision.SKIP


def test_an_image_without_a_mask_stays_skipped_until_one_appears(outputs: OutputIndex) -> None:
    lonely = Pair("a.jpg", "/in/a.jpg", None, "a", SIG, None)
    no_mask_row = row("no_mask", mask_size=None, mask_mtime_ns=None)
    assert decide(lonely, no_mask_row, settings_hash="s", outputs=outputs) is Decision.SKIP
    found = Pair("a.jpg", "/in/a.jpg", "/m/a.png", "a", SIG, MSIG)
    assert decide(found, no_mask_row, settings_hash="s", outputs=outputs) is Decision.DUE


def test_output_index_lists_each_folder_once(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.png").write_bytes(b"1")
    index = OutputIndex(tmp_path)
    assert index.exists("d/x.png") and not index.exists("d/y.png") and not index.exists("nope/x.png")


async def sort_all(triage: Triage, settings: Settings) -> tuple[list[str], dict[str, int]]:
    due: list[str] = []
    skipped: dict[str, int] = {}
    async for chunk in walked_chunks(settings, size=3):
        result = await triage.sort(chunk)
        due += [p.key for p in result.due]
        for status, n in result.skipped.items():
            skipped[status] = skipped.get(status, 0) + n
    return due, skipped


@pytest.mark.asyncio
async def test_triage_records_only_when_asked_and_hashes_only_what_moved(tmp_path: Path) -> None:
    write_tree(tmp_path, [f"p{i}" for i in range(5)], size=(32, 24))
    settings = Settings(input_dir=tmp_path / "photos", masks_dir=tmp_path / "masks", out_dir=tmp_path / "out")
    store = MemoryStore()
    planned, _ = await sort_all(Triage(store, settings, "s", record=False), settings)
    assert len(planned) == 5 and store.rows == {}  # a plan reads the store, never writes it

    due, _ = await sort_all(Triage(store, settings, "s", record=True), settings)
    assert due == planned and {r["status"] for r in store.rows.values()} == {"pending"}

    from batch_inpaint.hashing import content_hash as digest

    (tmp_path / "out").mkdir()
    for key, row in store.rows.items():  # as if a run had finished every item
        stem = key.rsplit(".", 1)[0]
        (tmp_path / "out" / f"{stem}.png").write_bytes(b"x")
        row.update(status="done", settings_hash="s", output_path=f"{stem}.png",
                   image_hash=digest(Path(row["image_path"]).read_bytes()),
                   mask_hash=digest(Path(row["mask_path"]).read_bytes()))
    touched = tmp_path / "photos" / "p1.jpg"
    touched.touch()  # a new mtime, the same content: still done, and the new signature is remembered
    (tmp_path / "masks" / "p2.png").write_bytes((tmp_path / "masks" / "p3.png").read_bytes())  # changed
    due, skipped = await sort_all(Triage(store, settings, "s", record=True), settings)
    assert due == ["p2.jpg"] and skipped == {"done": 4}
    assert store.rows["p1.jpg"]["image_mtime_ns"] == touched.stat().st_mtime_ns


@pytest.mark.asyncio
async def test_triage_sorts_invalid_and_maskless_pairs(tmp_path: Path) -> None:
    write_tree(tmp_path, ["a", "b"], size=(32, 24))
    (tmp_path / "masks" / "b.png").unlink()
    (tmp_path / "masks" / "orphan.png").write_bytes(b"")
    settings = Settings(input_dir=tmp_path / "photos", masks_dir=tmp_path / "masks", out_dir=tmp_path / "out")
    store = MemoryStore()
    [chunk] = [c async for c in walked_chunks(settings)]
    result = await Triage(store, settings, "s", record=True).sort(chunk)
    assert [p.key for p in result.due] == ["a.jpg"] and [p.key for p in result.no_mask] == ["b.jpg"]
    assert [o.path.name for o in result.orphans] == ["orphan.png"] and result.pairs == 2
    assert store.rows["b.jpg"]["status"] == "no_mask"


@pytest.mark.asyncio
async def test_a_manifest_made_with_sha256_hashes_still_knows_its_done_items(tmp_path: Path) -> None:
    """Upgrading must not make a touched but unchanged picture look new: it would be paid for again."""
    import hashlib

    write_tree(tmp_path, ["a", "b"], size=(32, 24))
    settings = Settings(input_dir=tmp_path / "photos", masks_dir=tmp_path / "masks", out_dir=tmp_path / "out")
    store = MemoryStore()
    store.content_hash = "sha256"  # as a manifest made before XXH128
    await sort_all(Triage(store, settings, "s", record=True), settings)
    (tmp_path / "out").mkdir()
    for key, row in store.rows.items():
        stem = key.rsplit(".", 1)[0]
        (tmp_path / "out" / f"{stem}.png").write_bytes(b"x")
        row.update(status="done", settings_hash="s", output_path=f"{stem}.png",
                   image_hash=hashlib.sha256(Path(row["image_path"]).read_bytes()).hexdigest()[:32],
                   mask_hash=hashlib.sha256(Path(row["mask_path"]).read_bytes()).hexdigest()[:32])
    (tmp_path / "photos" / "a.jpg").touch()
    (tmp_path / "masks" / "b.png").touch()
    due, skipped = await sort_all(Triage(store, settings, "s", record=True), settings)
    assert due == [] and skipped == {"done": 2}


@pytest.mark.asyncio
async def test_the_quick_skip_of_done_items_agrees_with_decide(tmp_path: Path) -> None:
    """`Triage` skips done and unchanged items without `decide`; over every kind of row a re-run meets
    (each status, other settings, a moved input, a lost output, no mask, --force), it sorts each item
    exactly as `decide` alone would."""
    import itertools

    (tmp_path / "a.png").write_bytes(b"png")
    outputs = OutputIndex(tmp_path)
    kinds = list(itertools.product(("done", "empty_mask", "failed", "invalid", "no_mask", "pending", "in_flight"),
                                   ("s", "other"), (SIG, FileSig(101, 5)), (MSIG, None), ("a.png", "gone.png", None)))
    pairs = [Pair(f"k{i}.jpg", f"/in/k{i}.jpg", None if msig is None else f"/m/k{i}.png", f"k{i}", SIG, msig)
             for i, (_, _, _, msig, _) in enumerate(kinds)]
    store = MemoryStore()
    for pair, (status, shash, isig, _, out) in zip(pairs, kinds):
        store.rows[pair.key] = dict(row(status, key=pair.key, settings_hash=shash, image_size=isig.size,
                                        image_mtime_ns=isig.mtime_ns, output_path=out)._asdict())
    for force in (False, True):
        settings = Settings(input_dir=tmp_path, out_dir=tmp_path, force=force)
        triage = Triage(store, settings, "s", record=False)
        triage._outputs = outputs
        result = await triage.sort(list(pairs))
        rows = await store.lookup([p.key for p in pairs])
        expected = {p.key: decide(p, rows[p.key], settings_hash="s", outputs=outputs, force=force) for p in pairs}
        skipped = [k for k, d in expected.items() if d is Decision.SKIP]
        assert sum(result.skipped.values()) == len(skipped) and (len(skipped) == 0) == force
        assert {p.key for p in result.due} == {k for k, d in expected.items() if d is not Decision.SKIP} - {
            p.key for p in result.no_mask}
        assert result.skipped.get("done", 0) == sum(rows[k].status == "done" for k in skipped)


@pytest.mark.asyncio
async def test_a_picture_gone_between_the_walk_and_the_sort_is_invalid_with_the_reason(tmp_path: Path) -> None:
    """The walk lists names; the sort stats them. A picture removed in between is reported as the walk
    reported one it could not stat, and its neighbours are sorted with their signatures."""
    write_tree(tmp_path, ["a", "b", "c"], size=(32, 24))
    settings = Settings(input_dir=tmp_path / "photos", masks_dir=tmp_path / "masks", out_dir=tmp_path / "out")
    [chunk] = [c async for c in walked_chunks(settings)]
    assert all(isinstance(piece, Slice) and piece.taken is None for piece in chunk)  # listed, not yet stat'ed
    (tmp_path / "photos" / "b.jpg").unlink()
    result = await Triage(MemoryStore(), settings, "s", record=True).sort(chunk)
    assert [(p.key, why) for p, why in result.invalid] == [("b.jpg", "cannot stat: No such file or directory")]
    assert [p.key for p in result.due] == ["a.jpg", "c.jpg"]
    a = tmp_path / "photos" / "a.jpg"
    assert result.due[0].image_sig == FileSig(a.stat().st_size, a.stat().st_mtime_ns)
    assert result.due[0].mask_sig == FileSig.of(tmp_path / "masks" / "a.png")


@pytest.mark.asyncio
@pytest.mark.parametrize("helper_after", [None, 0, 4])  # None: never
async def test_the_walk_comes_in_chunks_of_about_the_size_asked_whatever_the_folders(
        tmp_path: Path, helper_after: int | None) -> None:
    """A large folder is split, small ones go together: every picture is sorted once, in walk order,
    with its own signatures, whether stat'ed here or by a helper process from the first picture or
    the fifth on, and an orphan mask is reported once, with the last slice of its folder."""
    names = [f"big/p{i}" for i in range(7)] + ["s1/a", "s2/b", "s3/c"]
    write_tree(tmp_path, names, size=(16, 12))
    (tmp_path / "masks" / "big" / "zz.png").write_bytes(b"")
    settings = Settings(input_dir=tmp_path / "photos", masks_dir=tmp_path / "masks", out_dir=tmp_path / "out")
    triage = Triage(MemoryStore(), settings, "s", record=False)
    sizes, due, orphans, helped = [], [], [], 0
    async for chunk in walked_chunks(settings, size=3, helper_after=helper_after):
        helped += sum(piece.stop - piece.start for piece in chunk if isinstance(piece, Slice) and piece.taken)
        result = await triage.sort(chunk)
        sizes.append(result.pairs)
        due += result.due
        orphans += [o.path.name for o in result.orphans]
    assert [p.key for p in due] == [f"{n}.jpg" for n in names] and orphans == ["zz.png"]
    assert sizes == [3, 3, 3, 1]
    assert helped == {None: 0, 0: 10, 4: 10 - 3}[helper_after]  # the slice that crosses 4 goes to the helper
    for pair in due:
        assert pair.image_sig == FileSig.of(tmp_path / "photos" / pair.key)
        assert pair.mask_sig == FileSig.of(tmp_path / "masks" / pair.key.replace(".jpg", ".png"))


@pytest.mark.asyncio
async def test_a_helper_that_dies_mid_walk_costs_nothing_but_time(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The slices it had, and those walked after, are stat'ed here: a re-run still skips each done item
    and sends each changed one."""
    import signal

    from batch_inpaint import triage as triage_module

    names = [f"d{i}/p{j}" for i in range(3) for j in range(4)]
    write_tree(tmp_path, names, size=(16, 12))
    settings = Settings(input_dir=tmp_path / "photos", masks_dir=tmp_path / "masks", out_dir=tmp_path / "out")
    store = MemoryStore()
    await sort_all(Triage(store, settings, "s", record=True), settings)
    (tmp_path / "out").mkdir()
    for key, stored in store.rows.items():
        (tmp_path / "out" / key.replace(".jpg", ".png")).parent.mkdir(exist_ok=True)
        (tmp_path / "out" / key.replace(".jpg", ".png")).write_bytes(b"x")
        stored.update(status="done", settings_hash="s", output_path=key.replace(".jpg", ".png"))
    (tmp_path / "masks" / "d2" / "p1.png").write_bytes(b"edited")

    helpers: list[triage_module.Helper] = []
    real_start = triage_module.Helper.start
    monkeypatch.setattr(triage_module.Helper, "start", classmethod(lambda cls: helpers.append(real_start()) or helpers[-1]))
    triage = Triage(store, settings, "s", record=False)
    due, skipped = [], 0
    async for chunk in walked_chunks(settings, size=4, helper_after=0):
        if len(helpers) == 1 and helpers[0]._proc.poll() is None:
            os.kill(helpers[0].pid, signal.SIGKILL)  # while it holds the first slice, or just after
            helpers[0]._proc.wait()
        result = await triage.sort(chunk)
        due += [p.key for p in result.due]
        skipped += result.skipped.get("done", 0)
    assert due == ["d2/p1.jpg"] and skipped == 11 and len(helpers) == 1


@pytest.mark.asyncio
async def test_a_folder_holding_only_masks_reports_them_once_as_orphans(tmp_path: Path) -> None:
    write_tree(tmp_path, ["a", "only/b"], size=(16, 12), sibling=True)
    (tmp_path / "photos" / "only" / "b.jpg").unlink()
    settings = Settings(input_dir=tmp_path / "photos", out_dir=tmp_path / "out")
    triage = Triage(MemoryStore(), settings, "s", record=False)
    chunks = [c async for c in walked_chunks(settings, size=3)]
    results = [await triage.sort(chunk) for chunk in chunks]
    assert [p.key for r in results for p in r.due] == ["a.jpg"]
    assert [o.path.name for r in results for o in r.orphans] == ["b_mask.png"]


@pytest.mark.parametrize("helper_after", [None, 0])
def test_a_rerun_with_the_helper_on_a_real_manifest_sends_only_what_changed(
        tmp_path: Path, monkeypatch, helper_after: int | None) -> None:  # type: ignore[no-untyped-def]
    """With a helper from the first picture (stats and brief rows read from the SQLite manifest the run
    has open, a chunk ahead of the sort), a whole re-run decides as one without it."""
    import dataclasses
    import functools

    import anyio

    from batch_inpaint import intake, run_batch
    from batch_inpaint.engines import FakeEngine
    from batch_inpaint.limiter import Unlimited

    monkeypatch.setattr(intake, "walked_chunks", functools.partial(walked_chunks, size=2, helper_after=helper_after))
    names = [f"d{i}/p{j}" for i in range(3) for j in range(3)]
    write_tree(tmp_path, names, size=(16, 12))
    settings = Settings(input_dir=tmp_path / "photos", masks_dir=tmp_path / "masks", out_dir=tmp_path / "out",
                        api_key="k")

    def sent(**changes: object) -> list[str]:
        engine = FakeEngine()
        anyio.run(lambda: run_batch(dataclasses.replace(settings, **changes), engine=engine,
                                    limiter=Unlimited()))  # type: ignore[arg-type]
        return sorted(call.name for call in engine.calls)

    assert len(sent()) == 9
    assert sent() == []
    (tmp_path / "masks" / "d1" / "p2.png").write_bytes((tmp_path / "masks" / "d0" / "p0.png").read_bytes())
    (tmp_path / "photos" / "d2" / "p0.jpg").touch()  # a new mtime, the same content: still done
    (tmp_path / "out" / "d0" / "p1.png").unlink()  # a lost output is made again
    assert sent() == ["d0/p1.jpg", "d1/p2.jpg"]
    assert len(sent(force=True)) == 9
