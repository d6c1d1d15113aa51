"""The notification: retried on a webhook's 5xx, given up on a 4xx, and only ever naming its host."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from batch_inpaint import notify
from batch_inpaint.redaction import origin
from batch_inpaint.stats import RunStats

from ..webhook import Hook, webhook


@pytest.fixture
def hook() -> Iterator[Hook]:
    with webhook() as hook:
        yield hook


def test_only_the_host_of_a_webhook_is_ever_shown() -> None:
    assert origin("https://hooks.slack.com/services/T0/B0/XXXX") == "https://hooks.slack.com/***"
    assert origin("https://example.org:8443/hook?token=abc") == "https://example.org:8443/***"
    assert origin("http://127.0.0.1:9000") == "http://127.0.0.1:9000"


@pytest.mark.asyncio
async def test_a_5xx_is_tried_again_and_the_body_has_text_and_figures(hook: Hook) -> None:
    state, url = hook, hook.url
    state.statuses = [503, 500]
    stats = RunStats(seen=3, done=2, failed=1)
    stats.problems.append(("b.jpg", "failed", "HTTP 500"))
    body = notify.body(stats, 1, None, Path("/srv/out"))
    assert await notify.send(url, body, wait_seconds=0.01) is None
    assert len(state.bodies) == 3 and state.bodies[-1] == body
    assert body["text"].endswith("/srv/out: 2 done, 1 failed; exit code 1")
    assert body["failures"] == [{"path": "b.jpg", "status": "failed", "reason": "HTTP 500"}]


@pytest.mark.asyncio
async def test_a_webhook_that_refuses_or_is_gone_gives_a_reason_naming_its_host_only(hook: Hook) -> None:
    state, url = hook, hook.url
    state.statuses = [404]
    error = await notify.send(url, {"text": "x"}, wait_seconds=0.01)
    assert error is not None and "HTTP 404" in error and "secret-token" not in error and len(state.bodies) == 1
    state.statuses = [500, 500, 500]
    error = await notify.send(url, {"text": "x"}, wait_seconds=0.01)
    assert error is not None and "HTTP 500 after 3 attempts" in error and "secret-token" not in error
    gone = "http://127.0.0.1:1/hooks/secret-token"
    error = await notify.send(gone, {"text": "x"}, wait_seconds=0.01, timeout=2)
    assert error is not None and error.startswith("http://127.0.0.1:1/***: ") and "secret-token" not in error


def test_failures_only_unless_always() -> None:
    assert notify.wanted("failures", 1) and not notify.wanted("failures", 0)
    assert notify.wanted("always", 0)
