"""The run's report: a folder that opens from the disk with no server and no network.

``index.html`` holds the figures, the rate chart, the failures and the flagged results; the results
themselves are paged by `report.js` from small data files (``data/items-N.js``, `PAGE` items each, and
one index file per status), so a report of 100,000 items loads no more than a page of them. Each result
shows the strip `review` made while the run wrote it. Files are rewritten only when their content
changed, so a re-run's report costs what changed.
"""

from __future__ import annotations

import html
import json
import math
import os
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote

from . import locations, review
from .errors import OutputError
from .buckets import Location, is_url, read_bytes
from .output import write_atomic
from .reports import when
from .store import ItemRecord, RunRecord, Store

#: Items per data file, and per page on screen.
PAGE = 100
#: Failures and flagged results listed on the front page; the rest are one filter away.
LISTED = 200
#: Strips `batch-inpaint report` makes for results that have none (outputs adopted, runs made with
#: --no-report) each time: each costs a decode of the output, so a huge backlog is made over several.
#: The report a run writes at its end makes none: its own results were looked at as they came.
MAKE_AT_MOST = 2000
FLAGGED = "flagged"


@dataclass(frozen=True, slots=True)
class ReportWritten:
    index: Path
    items: int
    #: Files made or changed this time (data, strips); the rest were as they should be already.
    written: int
    #: Results still without a strip (more than `MAKE_AT_MOST` were missing).
    missing_strips: int = 0


async def write_report(store: Store, out_dir: Location, report_dir: Path, *, make: int = MAKE_AT_MOST) -> ReportWritten:
    """Write or update the report of the output folder ``out_dir`` in ``report_dir``.

    Items stream from the store a page at a time: what is kept of each beyond its page is its index in
    a status list and its folder's span, so memory stays small for any number of items. ``make``: strips
    to make at most for results that have none."""
    import anyio

    counts = await store.counts()
    runs = await store.runs()
    credits = await store.credits_spent()
    flagged_count, flagged = await store.flagged(LISTED)
    pages = _Pages(_Writer(report_dir), out_dir, report_dir, since=runs[-1].started_at if runs else 0.0, make=make)
    async for item in store.items():
        pages.add(item)
        if len(pages.rows) == PAGE:
            await anyio.to_thread.run_sync(pages.flush)
    await anyio.to_thread.run_sync(pages.flush)
    index = Front(counts, runs, credits, flagged_count, flagged, out_dir)
    await anyio.to_thread.run_sync(pages.finish, index)
    return ReportWritten(report_dir / "index.html", pages.count, pages.writer.written, pages.missing)


@dataclass(frozen=True, slots=True)
class Front:
    """What the front page shows besides what the pages gather."""

    counts: dict[str, int]
    runs: list[RunRecord]
    credits: Any
    flagged_count: int
    flagged: list[Any]
    out_dir: Location


class _Pages:
    def __init__(self, writer: "_Writer", out_dir: Location, report_dir: Path, since: float, make: int) -> None:
        self.writer, self.out_dir, self.report_dir, self.since, self.make = writer, out_dir, report_dir, since, make
        self.rows: list[dict[str, Any]] = []
        self.count = 0
        self.views: dict[str, list[int]] = {}
        self.folders: dict[str, list[int]] = {}
        self.problems: list[dict[str, Any]] = []
        self.problem_count = 0
        self.done_times: list[float] = []  #: paid results of the last run, for its chart
        self.made = self.missing = 0

    def add(self, item: ItemRecord) -> None:
        i = self.count
        self.count += 1
        row = _row(item, self.out_dir, self.report_dir)
        self.rows.append(row)
        self.views.setdefault(item.status, []).append(i)
        if item.status == "done":
            if item.flags:
                self.views.setdefault(FLAGGED, []).append(i)
            if item.sends and item.finished_at is not None and item.finished_at >= self.since:
                self.done_times.append(item.finished_at)
        elif item.status in ("failed", "invalid"):
            self.problem_count += 1
            if len(self.problems) < LISTED:
                self.problems.append(row)
        folder = row["d"]
        while folder:  # every ancestor: a folder's subtree is one run of keys in key order
            span = self.folders.setdefault(folder, [i, i + 1])
            span[1] = i + 1
            folder = folder.rpartition("/")[0]

    def flush(self) -> None:
        """The page of items gathered so far, with each done one pointed at its strip."""
        if not self.rows:
            return
        for row in self.rows:
            if row["s"] == "done":
                self._strip(row)
        number = (self.count - 1) // PAGE
        public = [{k: v for k, v in row.items() if not k.startswith("_")} for row in self.rows]
        self.writer.put(f"data/items-{number}.js", _js("items", number, public))
        self.rows = []

    def _strip(self, row: dict[str, Any]) -> None:
        """Its strip as the run made it; copied from the default folder into another ``--report-dir``;
        made from the files when there is none (``make`` at most)."""
        name = review.thumb_name(row["k"])
        target = locations.thumbs_dir(self.report_dir) / name
        if not target.exists():
            source = locations.thumbs_dir(locations.report_dir(self.out_dir)) / name
            if source != target and source.exists():
                write_atomic(target, source.read_bytes(), durable=False)
            elif self.made < self.make and _make_strip(row, self.out_dir, target.parent.parent):
                self.made += 1
            else:
                self.missing += 1
                return
            self.writer.written += 1
        row["t"] = target.relative_to(self.report_dir).as_posix()

    def finish(self, front: Front) -> None:
        for name, indices in self.views.items():
            self.writer.put(f"data/view-{name}.js", _js("view", name, indices))
        self.writer.put("data/folders.js", _js("folders", self.folders))
        assets = resources.files(__package__) / "report_assets"
        for asset in ("report.js", "report.css"):
            self.writer.put(asset, (assets / asset).read_text(encoding="utf-8"))
        meta = {"total": self.count, "page": PAGE, "views": {name: len(ix) for name, ix in sorted(self.views.items())}}
        self.writer.put("index.html", _index(meta, front, self))
        for stale in (self.report_dir / "data").glob("*.js"):  # pages and views of items no longer there
            if f"data/{stale.name}" not in self.writer.put_now:
                stale.unlink(missing_ok=True)


def _file_url(path: str | None) -> str | None:
    """A link the page can open: a file's; an object in a bucket has none a browser can follow (its
    strip shows it)."""
    return None if not path or is_url(path) else Path(path).absolute().as_uri()


def _row(item: ItemRecord, out_dir: Location, report_dir: Path) -> dict[str, Any]:
    folder = item.key.rpartition("/")[0]
    output = None
    if item.output_path and item.status in ("done", "empty_mask") and isinstance(out_dir, Path):
        output = quote(os.path.relpath(out_dir / item.output_path, report_dir).replace(os.sep, "/"))
    return {"k": item.key, "d": folder, "s": item.status, "e": item.error,
            "f": list(item.flags), "t": None, "i": _file_url(item.image_path), "m": _file_url(item.mask_path),
            "o": output, "_mask": item.mask_path, "_image": item.image_path, "_output": item.output_path}


def _make_strip(row: dict[str, Any], out_dir: Location, thumbs: Path) -> bool:
    try:
        image = read_bytes(row["_image"])
        mask = read_bytes(row["_mask"])
        output = (out_dir / row["_output"]).read_bytes()
        review.save_strip(thumbs, row["k"], review.look(image, mask, output, judge=False).strip)
    except OutputError:
        raise  # the report's own folder cannot be written: the report fails, saying why
    except Exception:  # any input gone or unreadable: the result is listed without a strip
        return False
    return True


class _Writer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.written = 0
        self.put_now: set[str] = set()

    def put(self, rel: str, text: str) -> None:
        """Write ``rel`` whole (temp file, rename) unless it holds ``text`` already."""
        self.put_now.add(rel)
        path = self.root / rel
        data = text.encode()
        try:
            if path.read_bytes() == data:
                return
        except OSError:
            pass
        write_atomic(path, data, durable=False)
        self.written += 1


def _js(call: str, *args: Any) -> str:
    return f"BI.{call}({', '.join(json.dumps(a, separators=(',', ':')) for a in args)});\n"


def _index(meta: dict[str, Any], front: Front, pages: _Pages) -> str:
    e = html.escape
    counts, runs, credits, out_dir = front.counts, front.runs, front.credits, front.out_dir
    flagged_count, flagged, missing = front.flagged_count, front.flagged, pages.missing
    last = runs[-1] if runs else None
    remaining = next((r.remaining_credits for r in reversed(runs) if r.remaining_credits is not None), None)
    figures = [("items", sum(counts.values()))] + sorted(counts.items())
    figures.append(("flagged for a second look", flagged_count))
    run_figures = [("credits used, all runs", credits),
                   ("credits left (as the API last said)", "unknown" if remaining is None else remaining)]
    if last is not None:
        run_figures += [("last run", f"#{last.id}, {when(last.started_at)}"),
                        ("its exit code", "none (running or killed)" if last.exit_code is None else last.exit_code),
                        ("its requests", last.requests or 0), ("its retries", last.retries or 0),
                        ("its 429s (rate-limited)", last.rate_limited or 0),
                        ("its credits", last.credits_used or 0)]
    problems = pages.problems
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>batch-inpaint report: {e(out_dir.name or str(out_dir))}</title>",
        '<link rel="icon" href="data:,"><link rel="stylesheet" href="report.css">',
        "</head><body>",
        f"<h1>batch-inpaint report <small>{e(str(out_dir.absolute()))}</small></h1>",
        f"<p class=when>written {when(time.time())}</p>",
        '<section id="figures"><h2>Figures</h2><div class=cols>',
        _table("items by status", figures), _table("credits and requests", run_figures),
        "</div>", _chart(last, pages.done_times), "</section>",
        f'<section id="problems"><h2>Failed and invalid <span class=count>{pages.problem_count}</span></h2>',
    ]
    if problems:
        parts.append("<table class=list><tr><th>item</th><th>status</th><th>reason</th></tr>")
        parts += [f"<tr class=problem><td>{e(r['k'])}</td><td>{e(r['s'])}</td><td>{e(r['e'] or '')}</td></tr>"
                  for r in problems]
        parts.append("</table>")
        if pages.problem_count > len(problems):
            parts.append(f"<p>... and {pages.problem_count - len(problems)} more: choose <em>failed</em> or "
                         "<em>invalid</em> below.</p>")
    else:
        parts.append("<p>None.</p>")
    parts.append(f'</section><section id="flagged"><h2>Worth a second look <span class=count>{flagged_count}'
                 "</span></h2>")
    if flagged:
        parts.append("<table class=list><tr><th>item</th><th>why</th></tr>")
        parts += [f"<tr class=flag><td>{e(f.key)}</td><td>{'<br>'.join(e(x) for x in f.flags)}</td></tr>"
                  for f in flagged]
        parts.append("</table>")
        if flagged_count > len(flagged):
            parts.append(f"<p>... and {flagged_count - len(flagged)} more: choose <em>flagged</em> below.</p>")
    else:
        parts.append("<p>None.</p>")
    if missing:
        parts.append(f"<p class=note>{missing} results have no thumbnail yet (outputs adopted, or made with "
                     f"--no-report): <code>batch-inpaint report</code> makes them, {MAKE_AT_MOST:,} at a time.</p>")
    parts += [
        '</section><section id="results"><h2>Results</h2>',
        '<form id="filters"><label>status <select id="view"></select></label> '
        '<label>folder <select id="folder"><option value="">all folders</option></select></label> '
        '<button type=button id="prev">previous</button> <span id="pageinfo"></span> '
        '<button type=button id="next">next</button></form>',
        '<p class=legend>Each result: the original, the mask drawn over it in red, the result. '
        "The links open the full-size files.</p>",
        '<div id="cards"></div></section>',
        f"<script>const BI = {{meta: {json.dumps(meta)}}};</script>",
        '<script src="report.js"></script>',
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _table(title: str, rows: Iterable[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table class=figures><caption>{html.escape(title)}</caption>{body}</table>"


def _chart(run: RunRecord | None, done_times: list[float]) -> str:
    """Results a minute over the last run, against its --rate (the API's limit as the run knew it), as
    inline SVG: about 60 bars, each at least a second long."""
    if run is None:
        return ""
    start = run.started_at
    times = sorted(t for t in done_times if t >= start and (run.ended_at is None or t <= run.ended_at + 1))
    if len(times) < 5:
        return "<p class=note>No rate chart: the last run made fewer than five results by request.</p>"
    local = run.settings.get("engine") == "local"
    rate = run.settings.get("rate")
    limit = None if local or not isinstance(rate, (int, float)) else float(rate)
    span = max((run.ended_at or times[-1]) - start, times[-1] - start, 1.0)
    width = max(1.0, span / 60)
    buckets = [0] * max(1, math.ceil(span / width))
    for t in times:
        buckets[min(len(buckets) - 1, int((t - start) / width))] += 1
    rates = [n * 60.0 / width for n in buckets]
    top = max(max(rates), limit or 0.0) * 1.1
    w, h = 600, 120
    step = w / len(rates)
    bars = "".join(f'<rect x="{i * step:.1f}" y="{h - r / top * h:.1f}" width="{max(step - 1, 1):.1f}" '
                   f'height="{r / top * h:.1f}"><title>{r:.0f}/min</title></rect>' for i, r in enumerate(rates))
    line = "" if limit is None else \
        f'<line x1="0" x2="{w}" y1="{h - limit / top * h:.1f}" y2="{h - limit / top * h:.1f}" class=limit />'
    mean = len(times) / span * 60
    what = "Results a minute (local engine, no rate limit)" if local else "Paid results a minute"
    against = "" if limit is None else f"; the dashed line is its --rate, {limit:g}/min ({mean / limit:.0%} used)"
    return (f'<figure class=chart><svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
            f'aria-label="results a minute against the limit">{bars}{line}</svg>'
            f"<figcaption>{what} in run #{run.id}: {len(times)} over {span:.0f} s, {mean:.1f}/min on average"
            f"{against}.</figcaption></figure>")
