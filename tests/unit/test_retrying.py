import email.utils

import asyncio
import pytest

from batch_inpaint.errors import (
    BrokenResponse,
    ConfigError,
    CreditsExhausted,
    InvalidInput,
    KeyRejected,
    OutputError,
    RateLimited,
    Rejected,
    ServerError,
    TransportError,
)
from batch_inpaint.retrying import RetryPolicy, is_retryable, parse_retry_after


@pytest.mark.parametrize(
    "exc, retry",
    [
        (RateLimited(None), True),
        (RateLimited(3.0), True),
        (ServerError(500, "x"), True),
        (ServerError(502, "x"), True),
        (ServerError(503, "x"), True),
        (ServerError(504, "x"), True),
        (TransportError("reset"), True),
        (BrokenResponse("corrupt"), True),
        (Rejected(400, "bad"), False),
        (Rejected(406, "accept"), False),
        (Rejected(422, "no"), False),
        (KeyRejected(401, "no key"), False),
        (KeyRejected(403, "bad key"), False),
        (CreditsExhausted("402"), False),
        (InvalidInput("broken"), False),
        (OutputError("disk full"), False),
        (ConfigError("x"), False),
        (ValueError("bug"), False),
        (KeyboardInterrupt(), False),
        (asyncio.CancelledError(), False),
    ],
)
def test_retry_predicate(exc: BaseException, retry: bool) -> None:
    assert is_retryable(exc) is retry


@pytest.mark.parametrize(
    "header, expected",
    [(None, None), ("", None), ("5", 5.0), (" 2.5 ", 2.5), ("-3", 0.0), ("nonsense", None), ("nan", None),
     ("inf", None), ("99999", 3600.0)],
)
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    header = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(header, now=now) == pytest.approx(30.0)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0


def test_backoff_is_full_jitter_and_capped() -> None:
    policy = RetryPolicy(base=1.0, cap=20.0)
    assert policy.backoff(1, rand=lambda: 1.0) == 1.0
    assert policy.backoff(3, rand=lambda: 1.0) == 4.0
    assert policy.backoff(10, rand=lambda: 1.0) == 20.0
    assert policy.backoff(10, rand=lambda: 0.0) == 0.0
