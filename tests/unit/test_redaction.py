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


def test_a_postgres_manifest_from_a_flag_the_environment_or_a_file_stays_a_url_and_is_shown_without_its_password(
        tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = "postgresql://bob:hunter2@db/jobs"
    config = tmp_path / "c.toml"
    config.write_text(f'manifest = "{url}"\nout = "cleaned"\n')
    for settings in (build_settings({"manifest": url, "out_dir": "cleaned"}, env={}),
                     build_settings({"out_dir": "cleaned"}, env={"BATCH_INPAINT_MANIFEST": url}),
                     build_settings({}, config_file=config, env={})):
        assert settings.fleet_manifest == url and settings.limit_sharing == url  # the limiter goes with it
        assert settings.public()["manifest"] == "postgresql://bob:***@db/jobs" and "hunter2" not in repr(settings)
        assert settings.job_name == str((settings.out_dir or tmp_path).absolute())
    assert build_settings({"manifest": url, "limiter": "process"}, env={}).limit_sharing == "process"
    relative = build_settings({"out_dir": "cleaned"}, config_file=_write(tmp_path / "d.toml", 'manifest = "m.db"'),
                              env={})
    assert relative.fleet_manifest is None and relative.manifest_path == tmp_path / "m.db"
    with pytest.raises(ConfigError, match="--force cannot be used with a Postgres manifest"):
        build_settings({"manifest": url, "force": True}, env={})
    with pytest.raises(ConfigError, match="postgresql://"):
        build_settings({"manifest": "mysql://bob:hunter2@db/jobs"}, env={})


def _write(path, text: str):  # type: ignore[no-untyped-def]
    path.write_text(text + "\n")
    return path
