"""BucketPath, store errors in words, retries on a fake clock, storage options that stay secret."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from batch_inpaint import buckets
from batch_inpaint.buckets import BucketPath, RetryPlan, location, parse_options, reason, tag
from batch_inpaint.errors import ConfigError
from batch_inpaint.settings import build_settings


def test_urls_become_bucket_paths_and_the_rest_stay_paths(tmp_path: Path) -> None:
    assert location("s3://bkt/a/b/") == BucketPath("s3://bkt/a/b")
    assert location("gs://bkt") == BucketPath("gs://bkt")
    assert location("file:///tmp/x") == Path("/tmp/x")
    assert location("photos") == Path("photos") and location(tmp_path) == tmp_path
    with pytest.raises(ConfigError, match="needs a bucket"):
        BucketPath("s3://")


def test_a_bucket_path_joins_and_names_as_a_path_does() -> None:
    out = BucketPath("s3://bkt/run 1")
    photo = out / "sub/x+y.jpg"
    assert str(photo) == "s3://bkt/run 1/sub/x+y.jpg" and photo.name == "x+y.jpg" and photo.suffix == ".jpg"
    assert photo.parent == out / "sub" and photo.bucket == "bkt" and photo.path == "bkt/run 1/sub/x+y.jpg"
    assert photo.within(out) and not BucketPath("s3://bkt/run 10").within(out)
    assert out.resolve() is out and out.absolute() is out
    assert BucketPath("s3://bkt").parent == BucketPath("s3://bkt")


@pytest.mark.parametrize("exc,code,words", [
    (FileNotFoundError("The specified bucket does not exist"), errno.ENOENT, "no such bucket"),
    (FileNotFoundError("photos/a.jpg"), errno.ENOENT, "no such object"),
    (PermissionError("The AWS Access Key Id you provided does not exist in our records."), errno.EACCES,
     "access denied (the credentials were refused)"),
    (PermissionError("Access Denied"), errno.EACCES, "access denied"),
    (OSError(errno.EBUSY, "Please reduce your request rate."), errno.EBUSY,
     "the store is throttling requests (503 Slow Down)"),
    (ConnectionError("Could not connect to the endpoint URL"), errno.ETIMEDOUT, "the store could not be reached"),
    (type("NoCredentialsError", (Exception,), {})("Unable to locate credentials"), errno.EACCES,
     "no credentials were found (environment, config file or instance role)"),
])
def test_store_errors_are_said_in_words(exc: Exception, code: int, words: str) -> None:
    assert reason(exc) == (code, words)


def test_a_throttled_call_is_made_again_with_growing_waits_on_a_fake_clock() -> None:
    slept: list[float] = []
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise OSError(errno.EBUSY, "SlowDown")
        return "ok"

    plan = RetryPlan(attempts=5, base=1.0, cap=30.0, sleep=slept.append)
    assert buckets._store_call("s3://b/k", flaky, plan) == "ok"
    assert len(calls) == 4 and len(slept) == 3 and all(0 <= s <= 30 for s in slept)


def test_a_refusal_is_not_retried_and_names_the_url() -> None:
    slept: list[float] = []
    calls = []

    def refused() -> None:
        calls.append(1)
        raise PermissionError("Access Denied")

    with pytest.raises(OSError) as caught:
        buckets._store_call("s3://b/k", refused, RetryPlan(sleep=slept.append))
    assert caught.value.errno == errno.EACCES and caught.value.filename == "s3://b/k"
    assert len(calls) == 1 and slept == []


def test_a_store_that_keeps_throttling_is_given_up_after_the_plans_attempts() -> None:
    slept: list[float] = []
    with pytest.raises(OSError, match="throttling"):
        buckets._store_call("s3://b/k", lambda: (_ for _ in ()).throw(OSError(errno.EBUSY, "503")),
                            RetryPlan(attempts=3, sleep=slept.append))
    assert len(slept) == 2


def test_storage_options_nest_and_parse_and_are_never_shown() -> None:
    assert parse_options(["anon=true", "client_kwargs.region_name=eu-west-1", "max_concurrency=4", "key=AKIA x"]) == {
        "anon": True, "client_kwargs": {"region_name": "eu-west-1"}, "max_concurrency": 4, "key": "AKIA x"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_options(["anon"])
    settings = build_settings({"input_dir": "s3://b/in", "out_dir": "s3://b/out",
                               "storage_options": ("secret=storage-canary-31", "endpoint_url=http://minio:9000")})
    assert isinstance(settings.input_dir, BucketPath) and settings.remote_out
    shown = f"{settings!r} {settings.public()}"
    assert "storage-canary-31" not in shown and "secret=***" in shown
    buckets.configure(())


def test_a_tag_follows_the_content_not_the_upload() -> None:
    assert tag({"ETag": '"abc"', "LastModified": "2026-01-01"}) == tag({"ETag": "abc", "LastModified": "2026-02-01"})
    assert tag({"ETag": '"abc"'}) != tag({"ETag": '"abd"'})
    assert 0 < tag({"md5Hash": "x"}) < 2**63 and tag({}) == 0


def test_a_store_without_its_library_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import fsspec

    def missing(protocol: str, **options: object) -> None:
        raise ImportError("Install gcsfs to access Google Storage")

    monkeypatch.setattr(fsspec, "filesystem", missing)
    buckets.forget()
    with pytest.raises(ConfigError, match=r"pip install 'batch-inpaint\[gcs\]'"):
        BucketPath("gs://bkt/x").read_bytes()
    buckets.forget()
