"""The live display: a rate-limited run says so while it lasts, and each notice is shown once."""

from __future__ import annotations

import anyio
import pytest

from batch_inpaint.progress import _line, new_notices
from batch_inpaint.reports import summary
from batch_inpaint.stats import RunStats


@pytest.mark.asyncio
async def test_the_line_shows_a_rate_limited_run_and_its_pace() -> None:
    stats = RunStats()
    assert "rate-limited" not in _line(stats)
    stats.rate_limited, stats.pace, stats.paused_until = 3, 54.0, anyio.current_time() + 20
    assert "rate-limited (3 x 429), pacing at 54/min, paused 20 s" in _line(stats)


def test_a_notice_shown_live_is_not_repeated_in_the_summary() -> None:
    stats = RunStats()
    stats.notice("the server's limit looks lower than --rate 600: pacing at 54/min")
    stats.notice("the server's limit looks lower than --rate 600: pacing at 54/min")
    assert new_notices(stats) == ["note: the server's limit looks lower than --rate 600: pacing at 54/min"]
    assert new_notices(stats) == []
    assert "pacing at 54/min" not in summary(stats, 0, None)
    stats.notice("another")
    assert "note: another" in summary(stats, 0, None)


def test_the_display_says_walking_until_the_total_is_known_and_keeps_failed_and_invalid_apart() -> None:
    from batch_inpaint.progress import bar_fields

    stats = RunStats(seen=120, due=100, done=5, failed=1, invalid=2)
    description, completed, total, detail = bar_fields(stats)
    assert description == "walking… 120 found" and total is None and completed == 8
    assert "5 ok, 1 failed, 2 invalid" in detail
    assert _line(stats).startswith("walking… 120 found, 8 settled: 5 done, 1 failed, 2 invalid")
    stats.walk_finished = True
    assert bar_fields(stats)[0] == "inpainting" and bar_fields(stats)[2] == 100
    assert _line(stats).startswith("8/100 settled: 5 done, 1 failed, 2 invalid")
