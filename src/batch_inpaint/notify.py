"""Tell someone how a run ended: a short JSON summary POSTed to a webhook (``--notify URL``).

The body has a ``text`` field, which Slack, Mattermost, Rocket.Chat and Teams' incoming webhooks show
as the message, and the figures beside it for anything else. It is sent after the exit code is known,
retried a few times, and never changes it; it never carries the key, and only the webhook's host is
ever shown, since a webhook URL is itself a secret.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from .buckets import Location
from .redaction import origin
from .stats import RunStats

ATTEMPTS = 3
TIMEOUT = 10.0
#: Failures named one by one in the body.
LISTED = 5


def wanted(notify_on: str, exit_code: int) -> bool:
    """``failures``: only a run that did not end with exit 0; ``always``: every run."""
    return notify_on == "always" or exit_code != 0


def body(stats: RunStats, exit_code: int, stop_reason: str | None, out_dir: Location, *,
         report: Path | None = None, duration: float | None = None) -> dict[str, Any]:
    host = socket.gethostname()
    done = stats.done + stats.copied + stats.reencoded + stats.adopted
    figures = ", ".join(f"{n} {what}" for n, what in ((done, "done"), (stats.failed, "failed"),
                                                       (stats.invalid, "invalid"), (stats.left, "left pending"))
                        if n) or "nothing to do"
    text = f"batch-inpaint on {host}, {out_dir}: {figures}; exit code {exit_code}"
    if stop_reason:
        text += f" ({stop_reason})"
    return {
        "text": text, "host": host, "out": str(out_dir.absolute()), "exit_code": exit_code,
        "stop_reason": stop_reason, "counts": stats.counts(), "left_pending": stats.left,
        "credits_used": str(stats.credits_used),
        "remaining_credits": None if stats.remaining_credits is None else str(stats.remaining_credits),
        "failures": [{"path": k, "status": st, "reason": r} for k, st, r in stats.problems[:LISTED]],
        "report": None if report is None else str(report.absolute()),
        "duration_seconds": None if duration is None else round(duration, 1),
    }


class _Again(Exception):
    """A 5xx or a 429 from the webhook: worth another try."""


def _worth_retrying(exc: BaseException) -> bool:
    return isinstance(exc, (_Again, httpx.TransportError))


async def send(url: str, payload: dict[str, Any], *, attempts: int = ATTEMPTS, timeout: float = TIMEOUT,
               wait_seconds: float = 1.0) -> str | None:
    """POST ``payload``; None once the webhook took it, else why not (naming only its host)."""
    where = origin(url)
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            async for attempt in AsyncRetrying(stop=stop_after_attempt(attempts), reraise=True,
                                               wait=wait_exponential(multiplier=wait_seconds, max=8 * wait_seconds),
                                               retry=retry_if_exception(_worth_retrying)):
                with attempt:
                    response = await client.post(url, json=payload)
                    if response.status_code == 429 or response.status_code >= 500:
                        raise _Again(f"HTTP {response.status_code}")
                    if response.status_code >= 300:
                        return f"{where}: HTTP {response.status_code}"
    except _Again as exc:
        return f"{where}: {exc} after {attempts} attempts"
    except httpx.HTTPError as exc:  # the message of a transport error names no URL, but make sure
        reason = str(exc).replace(url, where) or type(exc).__name__
        return f"{where}: {reason} after {attempts} attempts"
    return None
