"""The report, end to end: real photographs through the emulator, the report opened from file:// in
headless Chromium; the flags on answers the emulator makes bad on purpose; a 10,000-item report."""

from __future__ import annotations

import json
import shutil
import time
from decimal import Decimal
from pathlib import Path

import pytest

from batch_inpaint.store import Fingerprint, OutputRecord, SeenItem, SqliteStore

from ..browser import open_page
from ..conftest import CANARY_KEY, run_cli
from .helpers import FAST_RETRIES, check_output, write_config

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


def _tree(root: Path, folders: dict[str, list[str]]) -> Path:
    """Sample photographs copied into folders: ``{"good": ["coffee", "pad/rocket"]}``."""
    for folder, names in folders.items():
        for name in names:
            for kind, ext in (("photos", ".jpg"), ("masks", ".png")):
                target = root / kind / folder / (Path(name).name + ext)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(SAMPLES / kind / (name + ext), target)
    return root


def _run(data: Path, out: Path, url: str, *extra: str) -> tuple[int, str]:
    result = run_cli("run", str(data / "photos"), "--masks", str(data / "masks"), "--out", str(out), "--api-url", url,
                     "--rate", "600", "--progress", "none", *extra, key=CANARY_KEY)
    return result.returncode, result.stderr


def _export(out: Path) -> dict[str, dict]:
    result = run_cli("export", str(out), "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    return {row["key"]: row for row in map(json.loads, result.stdout.splitlines())}


def test_the_report_of_a_run_opens_from_the_disk_with_every_picture_and_failure(emulator, browser, tmp_path: Path) -> None:
    data = _tree(tmp_path / "data", {"": ["coffee", "astronaut"], "pad": ["pad/rocket"], "down": ["coffee"]})
    (data / "photos" / "broken.jpg").write_bytes((SAMPLES / "photos" / "coffee.jpg").read_bytes()[:3000])
    shutil.copyfile(SAMPLES / "masks" / "coffee.png", data / "masks" / "broken.png")
    out = tmp_path / "out"
    code, err = _run(data, out, emulator(key=CANARY_KEY).url, "--exclude", "down/*")
    assert code == 1 and "invalid: broken.jpg" in err, err
    # the API fails every request for the folder down/: its item fails after its attempts
    failing = emulator("--fault", "500=1.0", key=CANARY_KEY)
    config = write_config(tmp_path / "fast.toml", **FAST_RETRIES, max_attempts=2)
    code, err = _run(data, out, failing.url, "--include", "down/*", "-c", str(config))
    assert code == 1, err
    index = out / ".batch-inpaint" / "report" / "index.html"
    assert f"report: {index}" in err

    rows = _export(out)
    for name in ("coffee", "astronaut", "pad/rocket"):
        check_output(data / "photos" / f"{name}.jpg", data / "masks" / f"{name}.png", out / f"{name}.png")
    problems = {k for k, row in rows.items() if row["status"] in ("failed", "invalid")}
    assert problems == {"broken.jpg", "down/coffee.jpg"}

    opened = open_page(browser, index.as_uri())
    opened.shot("report-e2e")
    images = opened.images()
    assert len(images) == 3 and all(width > 0 for _, width in images), images
    assert opened.errors == []
    listed = opened.page.eval_on_selector_all("#problems tr.problem td:first-child", "cells => cells.map(c => c.textContent)")
    assert set(listed) == problems and len(listed) == len(problems)
    reasons = opened.page.inner_text("#problems")
    assert "gave up after 2 attempts" in reasons and "broken.jpg" in reasons
    figures = opened.page.inner_text("#figures")
    assert "done\t3" in figures and "failed\t1" in figures and "invalid\t1" in figures

    # the full-size files are one click away, and the filters choose
    links = opened.page.eval_on_selector_all(".card a", "links => links.map(a => a.href)")
    assert (out / "coffee.png").as_uri() in links and (data / "photos" / "coffee.jpg").as_uri() in links
    opened.page.select_option("#view", "failed")
    opened.page.wait_for_function("document.querySelectorAll('.card').length === 1")
    assert "down/coffee.jpg" in opened.page.inner_text("#cards")
    opened.page.select_option("#view", "all")
    opened.page.select_option("#folder", "pad")
    opened.page.wait_for_function("document.querySelectorAll('.card').length === 1")
    assert "pad/rocket.jpg" in opened.page.inner_text("#cards")
    opened.page.close()

    # no key and no credential anywhere in the report
    for path in (out / ".batch-inpaint" / "report").rglob("*"):
        if path.is_file():
            assert CANARY_KEY.encode() not in path.read_bytes(), path

    # a later report rewrites only its front page: the data and thumbnails were as they should be
    before = {p: p.stat().st_mtime_ns for p in (out / ".batch-inpaint" / "report").rglob("*") if p.is_file()}
    again = run_cli("report", str(out))
    assert again.returncode == 0 and again.stdout.strip() == str(index), again.stderr
    changed = [p.name for p, t in before.items() if p.stat().st_mtime_ns != t]
    assert set(changed) <= {"index.html"}, changed  # the front page says when it was written
    # a run that does nothing writes no report
    code, err = _run(data, out, emulator(key=CANARY_KEY).url, "--exclude", "down/*")
    assert "report:" not in err and all(p.stat().st_mtime_ns == t for p, t in before.items() if p.name != "index.html")


@pytest.mark.parametrize("work, flag", [("blob", "flat_fill"), ("echo", "unchanged"), ("shift", "colour_shift"),
                                        ("inpaint", None)])
def test_answers_worth_a_second_look_are_flagged(emulator, tmp_path: Path, work: str, flag: str | None) -> None:
    data = _tree(tmp_path / "data", {"": ["coffee", "pad/rocket"]})
    out = tmp_path / "out"
    code, err = _run(data, out, emulator("--work", work, key=CANARY_KEY).url)
    assert code == 0, err
    rows = _export(out)
    for key in ("coffee.jpg", "rocket.jpg"):
        flags = json.loads(rows[key]["flags"] or "[]")
        assert [f.split(":")[0] for f in flags] == ([flag] if flag else []), (key, flags)
    status = run_cli("status", str(out)).stdout
    if flag:
        assert "2 flagged for a second look" in err and "results flagged for a second look: 2" in status
        assert f"flagged: coffee.jpg: {flag}:" in status
        page = (out / ".batch-inpaint" / "report" / "index.html").read_text()
        assert page.count("<tr class=flag>") == 2 and "Worth a second look <span class=count>2" in page
    else:
        assert "flagged" not in err and "flagged" not in status


async def _big_manifest(out: Path, count: int) -> None:
    """``count`` items through the store's own verbs, nearly all done, spread over 100 folders; a strip for
    each done one (one real strip, copied: the report's cost, not the look's, is measured here)."""
    from batch_inpaint import review

    photo, mask = SAMPLES / "photos" / "coffee.jpg", SAMPLES / "masks" / "coffee.png"
    strip = review.look(photo.read_bytes(), mask.read_bytes(), (SAMPLES / "photos" / "astronaut.jpg").read_bytes(),
                        judge=False).strip
    store = SqliteStore(out / ".batch-inpaint" / "manifest.sqlite3")
    run = await store.start_run({"rate": 60.0, "engine": "clipdrop"}, 1)
    keys = [f"f{i % 100:03d}/img{i:05d}.jpg" for i in range(count)]
    await store.record_seen([SeenItem(k, str(photo), str(mask), None, None, "pending") for k in keys])
    thumbs = out / ".batch-inpaint" / "report" / "thumbs"
    for i, key in enumerate(keys):
        if i % 100 == 7:
            await store.record_failure(key, status="failed" if i % 200 == 7 else "invalid", error=f"reason {i}",
                                       error_status=None, settings_hash="s")
            continue
        await store.mark_in_flight(key, run, Fingerprint("h", "m", "s", "h:m"))
        await store.record_done(key, run, output=OutputRecord(key[:-4] + ".png", "o", 1), credits=Decimal(1),
                                remaining=None, seconds=1.0, fingerprint=None)
        if i % 100 == 3:
            await store.record_flags(key, ("flat_fill: the fill is flat",))
        review.save_strip(thumbs, key, strip)
    await store.aclose()


def test_a_ten_thousand_item_report_loads_in_a_few_seconds(browser, tmp_path: Path, figures) -> None:
    import anyio
    from concurrent.futures import ThreadPoolExecutor

    out = tmp_path / "out"
    with ThreadPoolExecutor(1) as pool:  # Playwright's own event loop runs in this thread
        started = time.perf_counter()
        pool.submit(anyio.run, _big_manifest, out, 10_000).result()
        figures("10,000-item report", "manifest made in (s)", f"{time.perf_counter() - started:.1f}")
    started = time.perf_counter()
    result = run_cli("report", str(out))
    written = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    report = out / ".batch-inpaint" / "report"
    size = sum(p.stat().st_size for p in report.iterdir() if p.is_file())
    assert size < 200_000, f"the front page and its assets weigh {size} bytes"

    started = time.perf_counter()
    opened = open_page(browser, (report / "index.html").as_uri())
    loaded = time.perf_counter() - started
    figures("10,000-item report", "written in (s)", f"{written:.1f}")
    figures("10,000-item report", "first page shown in (s)", f"{loaded:.2f}")
    opened.shot("report-10k")
    assert loaded < 5.0
    images = opened.images()
    assert len(images) == 100 and all(width > 0 for _, width in images)
    assert opened.errors == []
    assert "1-100 of 10000" in opened.page.inner_text("#pageinfo")
    assert opened.page.inner_text("#problems .count") == "100"
    assert opened.page.inner_text("#flagged .count") == "100"
    opened.page.select_option("#view", "failed")
    opened.page.wait_for_function("document.getElementById('pageinfo').textContent.startsWith('1-50 of 50')")
    opened.page.select_option("#view", "flagged")
    opened.page.select_option("#folder", "f003")
    opened.page.wait_for_function("document.getElementById('pageinfo').textContent.startsWith('1-100 of 100')")
    opened.page.select_option("#folder", "")
    opened.page.select_option("#view", "all")
    for _ in range(3):
        opened.page.click("#next")
    opened.page.wait_for_function("document.getElementById('pageinfo').textContent.startsWith('301-400')")
    opened.page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    assert opened.errors == []
    opened.page.close()


def test_a_report_elsewhere_is_whole_and_one_inside_the_input_is_refused(tmp_path: Path) -> None:
    data = _tree(tmp_path / "data", {"": ["coffee"], "pad": ["pad/rocket"]})
    out = tmp_path / "out"
    local = ("run", str(data / "photos"), "--masks", str(data / "masks"), "--out", str(out), "--engine", "local")
    refused = run_cli(*local, "--report-dir", str(data / "photos" / "report"))
    assert refused.returncode == 2 and "must not be inside the input folder" in refused.stderr
    assert not out.exists()
    elsewhere = tmp_path / "shared" / "report"
    made = run_cli(*local, "--report-dir", str(elsewhere), "--progress", "none")
    assert made.returncode == 0 and f"report: {elsewhere / 'index.html'}" in made.stderr, made.stderr
    assert not (out / ".batch-inpaint" / "report").exists()
    # the report's data point at the strips beside it and at the outputs where they are
    rows = [row for page in (elsewhere / "data").glob("items-*.js")
            for row in json.loads(page.read_text().split(", ", 1)[1].rsplit(");", 1)[0])]
    assert {row["k"] for row in rows} == {"coffee.jpg", "pad/rocket.jpg"}
    for row in rows:
        assert (elsewhere / row["t"]).is_file()
        assert (elsewhere / row["o"]).resolve() == out / (row["k"][:-4] + ".png")
    # --no-report: no report, and no thumbnail made on the way
    bare = tmp_path / "bare"
    quiet = run_cli("run", str(data / "photos"), "--masks", str(data / "masks"), "--out", str(bare), "--engine", "local",
                    "--no-report")
    assert quiet.returncode == 0 and "report:" not in quiet.stderr
    assert (bare / "coffee.png").is_file() and not (bare / ".batch-inpaint" / "report").exists()
