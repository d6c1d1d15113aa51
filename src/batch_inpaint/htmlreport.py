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
from .output import write_atomic
from .store import ItemRecord, RunRecord, Store

#: Items per data file, and per page on screen.
PAGE = 100
#: Failures and flagged results listed on the front page; the rest are one filter away.
LISTED = 200
#: Strips made for results that have none (adopted outputs, runs made with --no-report) per report:
#: each costs a decode of the output, so a huge backlog is made over several reports.
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


async def write_report(store: Store, out_dir: Path, report_dir: Path) -> ReportWritten:
    """Write or update the report of the output folder ``out_dir`` in ``report_dir``."""
    import anyio

    counts = await store.counts()
    runs = await store.runs()
    credits = await store.credits_spent()
    flagged_count, flagged = await store.flagged(LISTED)
    rows: list[dict[str, Any]] = []
    done_times: list[float] = []
    async for item in store.items():
        rows.append(_row(item, out_dir, report_dir))
        if item.status == "done" and item.sends and item.finished_at is not None:
            done_times.append(item.finished_at)
    writer = _Writer(report_dir)
    missing = await anyio.to_thread.run_sync(_strips, rows, out_dir, report_dir, writer)
    await anyio.to_thread.run_sync(_write_files, writer, rows, counts, runs, credits, flagged_count, flagged,
                                   done_times, out_dir, missing)
    return ReportWritten(report_dir / "index.html", len(rows), writer.written, missing)


def _file_url(path: str | None) -> str | None:
    return None if not path else Path(path).absolute().as_uri()


def _row(item: ItemRecord, out_dir: Path, report_dir: Path) -> dict[str, Any]:
    folder = item.key.rpartition("/")[0]
    output = None
    if item.output_path and item.status in ("done", "empty_mask"):
        output = quote(os.path.relpath(out_dir / item.output_path, report_dir).replace(os.sep, "/"))
    return {"k": item.key, "d": folder, "s": item.status, "e": item.error,
            "f": list(item.flags), "t": None, "i": _file_url(item.image_path), "m": _file_url(item.mask_path),
            "o": output, "_mask": item.mask_path, "_image": item.image_path, "_output": item.output_path}


def _strips(rows: list[dict[str, Any]], out_dir: Path, report_dir: Path, writer: "_Writer") -> int:
    """Point each done row at its strip; make the missing ones (at most `MAKE_AT_MOST`) from the files."""
    thumbs = report_dir / "thumbs"
    default = locations.report_dir(out_dir) / "thumbs"
    made = missing = 0
    for row in rows:
        if row["s"] != "done":
            continue
        name = review.thumb_name(row["k"])
        target = thumbs / name
        if not target.exists():
            source = default / name
            if source != target and source.exists():  # made by a run into the default report folder
                write_atomic(target, source.read_bytes(), durable=False)
                writer.written += 1
            elif made < MAKE_AT_MOST and _make_strip(row, out_dir, thumbs):
                made += 1
                writer.written += 1
            else:
                missing += 1
                continue
        row["t"] = "thumbs/" + name
    return missing


def _make_strip(row: dict[str, Any], out_dir: Path, thumbs: Path) -> bool:
    try:
        image = Path(row["_image"]).read_bytes()
        mask = Path(row["_mask"]).read_bytes()
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

    def put(self, rel: str, text: str) -> None:
        """Write ``rel`` whole (temp file, rename) unless it holds ``text`` already."""
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


def _write_files(writer: _Writer, rows: list[dict[str, Any]], counts: dict[str, int], runs: list[RunRecord],
                 credits: Any, flagged_count: int, flagged: list[Any], done_times: list[float], out_dir: Path,
                 missing: int) -> None:
    public = [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows]
    for start in range(0, len(public), PAGE):
        writer.put(f"data/items-{start // PAGE}.js", _js("items", start // PAGE, public[start:start + PAGE]))
    views: dict[str, list[int]] = {}
    folders: dict[str, list[int]] = {}
    for i, row in enumerate(public):
        views.setdefault(row["s"], []).append(i)
        if row["f"] and row["s"] == "done":
            views.setdefault(FLAGGED, []).append(i)
        folder = row["d"]
        while folder:  # every ancestor: a folder's subtree is one run of keys in key order
            span = folders.setdefault(folder, [i, i + 1])
            span[1] = i + 1
            folder = folder.rpartition("/")[0]
    for name, indices in views.items():
        writer.put(f"data/view-{name}.js", _js("view", name, indices))
    writer.put("data/folders.js", _js("folders", folders))
    assets = resources.files(__package__) / "report_assets"
    for asset in ("report.js", "report.css"):
        writer.put(asset, (assets / asset).read_text(encoding="utf-8"))
    meta = {"total": len(public), "page": PAGE, "views": {name: len(ix) for name, ix in sorted(views.items())}}
    writer.put("index.html", _index(meta, counts, runs, credits, flagged_count, flagged, done_times, public, out_dir,
                                    missing))


def _index(meta: dict[str, Any], counts: dict[str, int], runs: list[RunRecord], credits: Any, flagged_count: int,
           flagged: list[Any], done_times: list[float], rows: list[dict[str, Any]], out_dir: Path,
           missing: int) -> str:
    e = html.escape
    last = runs[-1] if runs else None
    remaining = next((r.remaining_credits for r in reversed(runs) if r.remaining_credits is not None), None)
    figures = [("items", sum(counts.values()))] + sorted(counts.items())
    figures.append(("flagged for a second look", flagged_count))
    run_figures = [("credits used, all runs", credits),
                   ("credits left (as the API last said)", "unknown" if remaining is None else remaining)]
    if last is not None:
        run_figures += [("last run", f"#{last.id}, {_when(last.started_at)}"),
                        ("its exit code", "none (running or killed)" if last.exit_code is None else last.exit_code),
                        ("its requests", last.requests or 0), ("its retries", last.retries or 0),
                        ("its 429s (rate-limited)", last.rate_limited or 0),
                        ("its credits", last.credits_used or 0)]
    problems = [r for r in rows if r["s"] in ("failed", "invalid")]
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>batch-inpaint report: {e(out_dir.name or str(out_dir))}</title>",
        '<link rel="icon" href="data:,"><link rel="stylesheet" href="report.css">',
        "</head><body>",
        f"<h1>batch-inpaint report <small>{e(str(out_dir.absolute()))}</small></h1>",
        f"<p class=when>written {_when(time.time())}</p>",
        '<section id="figures"><h2>Figures</h2><div class=cols>',
        _table("items by status", figures), _table("credits and requests", run_figures),
        "</div>", _chart(last, done_times), "</section>",
        f'<section id="problems"><h2>Failed and invalid <span class=count>{len(problems)}</span></h2>',
    ]
    if problems:
        parts.append("<table class=list><tr><th>item</th><th>status</th><th>reason</th></tr>")
        parts += [f"<tr class=problem><td>{e(r['k'])}</td><td>{e(r['s'])}</td><td>{e(r['e'] or '')}</td></tr>"
                  for r in problems[:LISTED]]
        parts.append("</table>")
        if len(problems) > LISTED:
            parts.append(f"<p>... and {len(problems) - LISTED} more: choose <em>failed</em> or <em>invalid</em> "
                         "below.</p>")
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
        parts.append(f"<p class=note>{missing} results have no thumbnail yet: the next report makes them.</p>")
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


def _when(ts: float | None) -> str:
    return "never" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


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
