"""The report's files from a store: pages, views by status, folder spans, and only what changed rewritten."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from batch_inpaint import htmlreport, review
from batch_inpaint.store import Fingerprint, MemoryStore, OutputRecord, SeenItem

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


def _data(report: Path, name: str) -> list:
    """The arguments a data file hands to ``BI.<call>(...)``."""
    text = (report / "data" / f"{name}.js").read_text()
    call, _, args = text.partition("(")
    return json.loads("[" + args.rstrip().removesuffix(");") + "]")


async def _store(tmp_path: Path, keys: list[str]) -> MemoryStore:
    """Every key done with a real output (the coffee photograph), but ``bad*`` failed."""
    store = MemoryStore()
    run = await store.start_run({"rate": 60.0}, 1)
    photo, mask = SAMPLES / "photos" / "coffee.jpg", SAMPLES / "masks" / "coffee.png"
    await store.record_seen([SeenItem(k, str(photo), str(mask), None, None, "pending") for k in keys])
    for key in keys:
        if Path(key).name.startswith("bad"):
            await store.record_failure(key, status="invalid", error="image is truncated", error_status=None,
                                       settings_hash="s")
            continue
        output = tmp_path / "out" / (key[:-4] + ".png")
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo, output)
        await store.mark_in_flight(key, run, Fingerprint("i", "m", "s", "c"))
        await store.record_done(key, run, output=OutputRecord(key[:-4] + ".png", "h", 1), credits=Decimal(1),
                                remaining=None, seconds=None, fingerprint=None)
        await store.record_flags(key, ("unchanged: same",) if "same" in key else ())
    return store


@pytest.mark.asyncio
async def test_pages_views_and_folders_cover_every_item_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(htmlreport, "PAGE", 3)
    keys = ["a.jpg", "bad.jpg", "x/b.jpg", "x/same.jpg", "x/y/c.jpg", "x/y/bad2.jpg", "z/d.jpg"]
    store = await _store(tmp_path, keys)
    report = tmp_path / "report"
    written = await htmlreport.write_report(store, tmp_path / "out", report)
    assert written.items == 7 and written.missing_strips == 0 and written.index == report / "index.html"
    pages = [_data(report, f"items-{n}") for n in range(3)]
    assert [n for n, _ in pages] == [0, 1, 2]
    rows = [row for _, page in pages for row in page]
    assert [row["k"] for row in rows] == sorted(keys)
    assert _data(report, "view-invalid") == ["invalid", [1, 4]]
    assert _data(report, "view-flagged") == ["flagged", [3]]
    [folders] = _data(report, "folders")
    assert folders == {"x": [2, 6], "x/y": [4, 6], "z": [6, 7]}
    done = [row for row in rows if row["s"] == "done"]
    # strips made from the files for results that had none, and every link points at a real file
    assert all(row["t"] and (report / row["t"]).is_file() for row in done)
    assert all((report / row["o"]).resolve() == (tmp_path / "out" / (row["k"][:-4] + ".png")) for row in done)
    assert [row["t"] for row in rows if row["s"] == "invalid"] == [None, None]
    page = (report / "index.html").read_text()
    assert page.count("<tr class=problem>") == 2 and "image is truncated" in page
    assert "<svg" in page and "Paid results a minute in run #1: 5 over" in page and "--rate, 60/min" in page
    for name in ("index.html", "report.js", "report.css"):  # nothing is fetched from the network
        assert "http://" not in (report / name).read_text() and "https://" not in (report / name).read_text()

    again = await htmlreport.write_report(store, tmp_path / "out", report)
    assert again.written <= 1  # at most the front page (its time); data, strips and assets were as they should be
    del store.rows["z/d.jpg"], store.rows["x/same.jpg"]  # gone from the record: their pages and view go too
    await htmlreport.write_report(store, tmp_path / "out", report)
    assert sorted(p.name for p in (report / "data").iterdir()) == [
        "folders.js", "items-0.js", "items-1.js", "view-done.js", "view-invalid.js"]


@pytest.mark.asyncio
async def test_strips_made_while_running_are_used_and_a_backlog_is_made_a_part_at_a_time(tmp_path: Path) -> None:
    keys = [f"p{i}.jpg" for i in range(5)]
    store = await _store(tmp_path, keys)
    default = tmp_path / "out" / ".batch-inpaint" / "report" / "thumbs"
    review.save_strip(default, "p0.jpg", b"made by the run")
    elsewhere = tmp_path / "elsewhere"
    written = await htmlreport.write_report(store, tmp_path / "out", elsewhere, make=2)
    assert (elsewhere / "thumbs" / review.thumb_name("p0.jpg")).read_bytes() == b"made by the run"
    assert written.missing_strips == 2
    assert "2 results have no thumbnail yet" in (elsewhere / "index.html").read_text()
    # the report at a run's end makes none; `batch-inpaint report` makes the rest
    assert (await htmlreport.write_report(store, tmp_path / "out", elsewhere, make=0)).missing_strips == 2
    assert (await htmlreport.write_report(store, tmp_path / "out", elsewhere, make=2)).missing_strips == 0
