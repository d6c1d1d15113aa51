"""8. The report at scale: writing it for 10,000 and 100,000 items, writing it again with nothing
changed, what the front page weighs, and how long headless Chromium takes to show its first page.

The manifest is filled in one transaction (the report's cost is measured, not the runs'), 1% of the
items invalid and 1% flagged, in 1,000 folders; every done item has a strip, hard links to one real
strip (the look's own cost is in the cost-per-picture benchmark). `batch-inpaint report` runs as a
process of its own: its wall time, CPU and peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path

from .common import WORK, measured_cli, median

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"
FRONT = ("index.html", "report.js", "report.css", "data/folders.js")


def make_manifest(out: Path, count: int) -> None:
    import anyio

    from batch_inpaint import review
    from batch_inpaint.store import SqliteStore

    shutil.rmtree(out, ignore_errors=True)
    manifest = out / ".batch-inpaint" / "manifest.sqlite3"

    async def made() -> None:
        store = SqliteStore(manifest)
        run = await store.start_run({"rate": 60.0, "engine": "clipdrop"}, 1)
        await store.aclose()
        db = sqlite3.connect(manifest)
        start = time.time() - count
        photo, mask = str(SAMPLES / "photos" / "coffee.jpg"), str(SAMPLES / "masks" / "coffee.png")
        flag = json.dumps(["flat_fill: the fill is flat (texture 0.4) where its surroundings are textured (8.1)"])
        rows = []
        for i in range(count):
            key = f"shard{i % 1000:04d}/img{i:07d}.jpg"
            invalid = i % 100 == 50
            rows.append((key, photo, mask, "invalid" if invalid else "done", "image is truncated" if invalid else None,
                         None if invalid else key[:-4] + ".png", 1, start + i, flag if i % 100 == 3 else None, run))
        with db:
            db.executemany("INSERT INTO items (key, image_path, mask_path, status, error, output_path, sends,"
                           " finished_at, flags, run_id, credits) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '1')", rows)
            db.execute("UPDATE runs SET ended_at=?, requests=? WHERE id=?", (time.time(), count, run))
        db.close()

    anyio.run(made)
    strip = review.look((SAMPLES / "photos" / "coffee.jpg").read_bytes(), (SAMPLES / "masks" / "coffee.png").read_bytes(),
                        (SAMPLES / "photos" / "coffee.jpg").read_bytes(), judge=False).strip
    thumbs = out / ".batch-inpaint" / "report" / "thumbs"
    sources = out / "strips"  # a file takes at most 65,000 links: one source per 50,000 items
    sources.mkdir()
    for i in range(count):
        if i % 100 != 50:
            source = sources / f"{i // 50_000}.jpg"
            if not source.exists():
                source.write_bytes(strip)
            target = thumbs / review.thumb_name(f"shard{i % 1000:04d}/img{i:07d}.jpg")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(source, target)


def first_page_seconds(index: Path) -> float | None:
    """Seconds from opening the report to its first page of thumbnails drawn, or None without Chromium."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        return None
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        page = browser.new_page()
        started = time.perf_counter()
        page.goto(index.as_uri())
        page.wait_for_selector("body[data-ready='1']", timeout=60_000)
        page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
        seconds = time.perf_counter() - started
        browser.close()
    return seconds


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, action="append", help="report sizes (default 10000 and 100000)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    table = {}
    for count in args.items or [10_000, 100_000]:
        out = WORK / f"report-{count}"
        make_manifest(out, count)
        first, again, rss, shown = [], [], [], []
        for _ in range(args.runs):
            shutil.rmtree(out / ".batch-inpaint" / "report" / "data", ignore_errors=True)
            made = measured_cli("report", str(out))
            assert made.returncode == 0, made.stderr[-2000:]
            same = measured_cli("report", str(out))
            first.append(made.seconds)
            again.append(same.seconds)
            rss.append(made.max_rss_mb)
            page = first_page_seconds(out / ".batch-inpaint" / "report" / "index.html")
            if page is not None:
                shown.append(page)
        report = out / ".batch-inpaint" / "report"
        front = sum((report / name).stat().st_size for name in FRONT)
        data = list((report / "data").iterdir())
        table[count] = {"first": median(first), "again": median(again), "rss": median(rss),
                        "shown": median(shown) if shown else None, "front KB": front / 1e3,
                        "data MB": sum(p.stat().st_size for p in data) / 1e6,
                        "largest KB": max(p.stat().st_size for p in data) / 1e3}
    print(f"report: batch-inpaint report OUT over a manifest of N items (1% invalid, 1% flagged, 1,000 folders), "
          f"median of {args.runs} runs")
    for count, row in table.items():
        shown = "no Chromium" if row["shown"] is None else f"{row['shown']:.2f} s"
        print(f"  {count:>7,} items   written {row['first']:5.1f} s (peak {row['rss']:4.0f} MB)   again, nothing changed"
              f" {row['again']:5.1f} s   front page {row['front KB']:6.1f} KB, data {row['data MB']:5.1f} MB in files"
              f" of at most {row['largest KB']:5.1f} KB   first page in Chromium {shown}")
    return {"runs": args.runs, "table": table}


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
