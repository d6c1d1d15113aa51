"""A URL's password never reaches what a person or a log reads (`redaction`, `Settings.public`)."""

from __future__ import annotations

import pytest

from batch_inpaint.errors import ConfigError
from batch_inpaint.redaction import redact_url, scrub
from batch_inpaint.settings import build_settings


@pytest.mark.parametrize("url, shown", [
    ("postgresql://bob:s3cr%40t@db.example:5432/jobs", "postgresql://bob:***@db.example:5432/jobs"),
    ("postgresql://db.example/jobs?user=bob&password=s3cret&sslmode=require",
     "postgresql://db.example/jobs?user=bob&password=***&sslmode=require"),
    ("postgresql://bob@db.example/jobs", "postgresql://bob@db.example/jobs"),
])
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_an_error_naming_the_url_or_the_password_is_scrubbed() -> None:
    url = "postgresql://bob:s3cr%40t@db.example/jobs"
    text = scrub(f'invalid dsn: "{url}"; also s3cr@t and s3cr%40t', url)
    assert "s3cr" not in text and "postgresql://bob:***@db.example/jobs" in text


def test_the_limiter_setting_is_recorded_and_shown_without_its_password() -> None:
    settings = build_settings({"limiter": "postgresql://bob:hunter2@db/jobs"}, env={})
    assert settings.public()["limiter"] == "postgresql://bob:***@db/jobs"
    assert "hunter2" not in repr(settings)


def test_the_limiter_comes_from_the_environment_and_is_checked() -> None:
    assert build_settings({}, env={}).limit_sharing == "host"
    assert build_settings({}, env={"BATCH_INPAINT_LIMITER": "process"}).limit_sharing == "process"
    with pytest.raises(ConfigError, match="limiter must be host, process or a postgresql:// URL") as info:
        build_settings({"limiter": "mysql://bob:hunter2@db/jobs"}, env={})
    assert "hunter2" not in str(info.value)
