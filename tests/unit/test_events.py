"""Events for machines: each is one JSON line with the documented fields, and nothing else."""

from __future__ import annotations

import io
import json
import re
from decimal import Decimal
from pathlib import Path

from batch_inpaint.events import FIELDS, JsonLines
from batch_inpaint.progress import new_problems
from batch_inpaint.stats import RunStats

README = Path(__file__).resolve().parents[2] / "README.md"


def test_an_event_is_one_line_of_json_with_an_iso_utc_time() -> None:
    stream = io.StringIO()
    JsonLines(stream)("item_done", "info", {"path": "a b.jpg", "credits": Decimal("1"), "output": Path("x/a.png")})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["time"])
    assert event == {"time": event["time"], "level": "info", "event": "item_done", "path": "a b.jpg",
                     "credits": 1.0, "output": "x/a.png"}


def test_run_stats_send_items_and_notices_to_the_sink_with_the_documented_fields() -> None:
    seen: list[tuple[str, str, dict]] = []
    stats = RunStats(sink=lambda event, level, fields: seen.append((event, level, fields)))
    stats.problem("a.jpg", "failed", "HTTP 500", attempts=8, http_status=500)
    stats.problem("b.jpg", "invalid", "not a picture")
    stats.without_mask(["c.jpg"])
    stats.notice("pacing at 30/min")
    stats.notice("pacing at 30/min")  # said once
    assert [(e, lvl) for e, lvl, _ in seen] == [("item_failed", "error"), ("item_invalid", "warning"),
                                                ("item_skipped", "info"), ("notice", "warning")]
    for event, _, fields in seen:
        assert tuple(fields) == FIELDS[event], event
    assert seen[0][2]["attempts"] == 8 and seen[0][2]["http_status"] == 500


def test_readme_documents_every_event_and_its_fields() -> None:
    text = README.read_text(encoding="utf-8")
    for event, fields in FIELDS.items():
        row = re.search(rf"^\| `{event}` \|(.*)\|$", text, re.M)
        assert row is not None, f"README has no row for the event {event}"
        names = re.sub(r"\([^)]*\)", "", row.group(1))  # the words in brackets are values, not fields
        documented = tuple(re.findall(r"`(\w+)`", names))
        assert documented == fields, f"README's {event}: {documented} != {fields}"


def test_the_quiet_log_shows_each_failure_once() -> None:
    stats = RunStats()
    stats.problem("a.jpg", "failed", "HTTP 500")
    assert new_problems(stats) == ["failed: a.jpg: HTTP 500"]
    assert new_problems(stats) == []
    stats.problem("b.jpg", "invalid", "not a picture")
    assert new_problems(stats) == ["invalid: b.jpg: not a picture"]


def test_a_crash_in_a_json_log_is_one_json_line_with_its_traceback(monkeypatch, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from batch_inpaint import cli

    def broken(settings, *, watching=False):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "_run", broken)
    code = cli.main(["run", str(tmp_path), "-o", str(tmp_path / "out"), "--engine", "local", "--log-format", "json"])
    lines = capsys.readouterr().err.splitlines()
    assert code == 1 and len(lines) == 1
    event = json.loads(lines[0])
    assert event["event"] == "crash" and event["message"] == "RuntimeError: a bug" and set(event) == {
        "time", "level", "event", *FIELDS["crash"]}
    assert 'raise RuntimeError("a bug")' in event["traceback"]
    monkeypatch.setattr(cli, "_run", broken)
    import pytest

    with pytest.raises(RuntimeError):  # for people, the traceback as Python prints it
        cli.main(["run", str(tmp_path), "-o", str(tmp_path / "out"), "--engine", "local"])
