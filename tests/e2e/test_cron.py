"""Scheduled and unattended runs, end to end against the emulator: JSON logs a collector can read, the
metrics file during and after a run, the notification, and watch mode with files arriving slowly."""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from batch_inpaint.events import FIELDS

from ..conftest import CANARY_KEY, run_cli, start_cli, wait_for
from ..webhook import webhook
from .helpers import FAST_RETRIES, check_output, copy_slowly, pairs_of, write_config

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"
FINAL_EVENT = {"done": "item_done", "failed": "item_failed", "invalid": "item_invalid", "no_mask": "item_skipped",
               "empty_mask": "item_skipped"}


def _events(stderr: str) -> list[dict]:
    """Every line of stderr as an event with exactly its documented fields (a line that is not JSON fails)."""
    events = [json.loads(line) for line in stderr.splitlines()]
    for event in events:
        assert set(event) == {"time", "level", "event", *FIELDS[event["event"]]}, event
        assert event["time"].endswith("Z") and event["level"] in ("info", "warning", "error")
    return events


def _export(out: Path) -> dict[str, dict]:
    result = run_cli("export", str(out), "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    return {row["key"]: row for row in map(json.loads, result.stdout.splitlines())}


def _metrics(path: Path) -> dict[str, float]:
    """Sample name (with the status or outcome label, if any) -> value."""
    found = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            extra = sample.labels.get("status") or sample.labels.get("outcome")
            found[sample.name + (f":{extra}" if extra else "")] = sample.value
    return found


def _faulty_tree(photos: Path) -> None:
    """The eight pairs, plus a truncated picture (invalid) and a picture without a mask."""
    (photos / "photos" / "broken.jpg").write_bytes((photos / "photos" / "a.jpg").read_bytes()[:2000])
    shutil.copyfile(photos / "masks" / "a.png", photos / "masks" / "broken.png")
    shutil.copyfile(photos / "photos" / "b.jpg", photos / "photos" / "lonely.jpg")


def test_json_logs_of_a_run_with_faults_name_every_item_with_its_final_status(emulator, photos: Path, tmp_path: Path) -> None:
    _faulty_tree(photos)
    api = emulator("--fault", "500=0.25", "--fault", "429=0.15", "--seed", "7", key=CANARY_KEY)
    config = write_config(tmp_path / "fast.toml", **FAST_RETRIES, max_attempts=2)
    metrics = tmp_path / "batch_inpaint.prom"
    out = tmp_path / "out"
    result = run_cli("run", str(photos / "photos"), "--masks", str(photos / "masks"), "-o", str(out), "-c", str(config),
                     "--api-url", api.url, "--rate", "600", "--log-format", "json", "--metrics-file", str(metrics),
                     key=CANARY_KEY)
    assert CANARY_KEY not in result.stderr + result.stdout + metrics.read_text()
    events = _events(result.stderr)
    assert events[0]["event"] == "run_started" and events[-1]["event"] == "run_ended"
    assert events[-1]["exit_code"] == result.returncode == 1
    assert "api_key" not in events[0]["settings"]
    final: dict[str, dict] = {}
    for event in events:
        if event["event"].startswith("item_"):
            final[event["path"]] = event
    rows = _export(out)
    assert set(final) == set(rows)
    for key, row in rows.items():
        assert final[key]["event"] == FINAL_EVENT[row["status"]], (key, final[key], row["status"])
        assert final[key]["status"] == row["status"]
        if row["status"] == "done":
            assert final[key]["attempts"] == row["attempts"] and str(out / final[key]["output"]) == row["output_path"]
        if row["status"] == "failed":  # it went out, and how long it was tried is said
            assert final[key]["attempts"] == row["attempts"] >= 2 and final[key]["seconds"] >= 0  # 429s not counted
            assert final[key]["credits"] == 0 and final[key]["http_status"] in (429, 500)
    assert rows["broken.jpg"]["status"] == "invalid" and rows["lonely.jpg"]["status"] == "no_mask"
    limited = [e for e in events if e["event"] == "rate_limited"]
    assert len(limited) == sum(1 for e in api.entries() if e.get("status") == 429) > 0
    assert sum(1 for e in events if e["event"] == "item_failed") == sum(1 for r in rows.values() if r["status"] == "failed")

    figures = _metrics(metrics)
    statuses = [r["status"] for r in rows.values()]
    for status in set(statuses):
        assert figures[f"batch_inpaint_items:{status}"] == statuses.count(status)
    assert figures["batch_inpaint_requests_total"] == len(api.entries())
    assert figures["batch_inpaint_credits_used_total"] == api.charged()
    assert figures["batch_inpaint_exit_code"] == 1 and figures["batch_inpaint_running"] == 0


def test_without_a_terminal_the_text_log_is_the_failures_and_the_summary(emulator, photos: Path, tmp_path: Path) -> None:
    _faulty_tree(photos)
    result = run_cli("run", str(photos / "photos"), "--masks", str(photos / "masks"), "-o", str(tmp_path / "out"),
                     "--api-url", emulator(key=CANARY_KEY).url, "--rate", "600", key=CANARY_KEY)
    lines = result.stderr.splitlines()
    assert result.returncode == 1
    assert lines[0].startswith("batch-inpaint: invalid: broken.jpg: "), lines  # as it happened, before the summary
    assert lines[1].startswith("batch-inpaint: 10 images seen: 8 done"), lines
    assert not [line for line in lines if "settled:" in line]  # no progress line in a run under a minute


def test_the_metrics_file_is_there_during_the_run(emulator, photos: Path, tmp_path: Path) -> None:
    api = emulator("--latency-mean", "0.4", key=CANARY_KEY)
    metrics = tmp_path / "batch_inpaint.prom"
    config = write_config(tmp_path / "c.toml", metrics_every=0.2)
    run = start_cli("run", str(photos / "photos"), "--masks", str(photos / "masks"), "-o", str(tmp_path / "out"),
                    "--api-url", api.url, "--rate", "120", "-c", str(config), "--metrics-file", str(metrics),
                    "--progress", "none", key=CANARY_KEY)
    seen_running: list[dict[str, float]] = []

    def running() -> bool:
        if metrics.exists():
            figures = _metrics(metrics)
            if figures["batch_inpaint_running"] == 1 and figures["batch_inpaint_items:done"] >= 1:
                seen_running.append(figures)
                return True
        return run.poll() is not None

    assert wait_for(running, timeout=60)
    assert run.wait(timeout=120) == 0, run.communicate()
    assert seen_running, "the file never showed the run going on"
    during = seen_running[0]
    assert 0 < during["batch_inpaint_items:done"] < 8 and "batch_inpaint_run_end_timestamp_seconds" not in during
    after = _metrics(metrics)
    assert after["batch_inpaint_items:done"] == 8 == after["batch_inpaint_run_items:done"]
    assert after["batch_inpaint_exit_code"] == 0 and after["batch_inpaint_running"] == 0
    assert after["batch_inpaint_last_success_timestamp_seconds"] == after["batch_inpaint_run_end_timestamp_seconds"]


def test_notify_says_how_a_failing_run_ended_and_a_broken_webhook_changes_nothing(emulator, photos: Path,
                                                                                 tmp_path: Path) -> None:
    api = emulator("--fault", "500=1.0", key=CANARY_KEY)
    config = write_config(tmp_path / "fast.toml", **FAST_RETRIES, max_attempts=1)
    args = ["run", str(photos / "photos"), "--masks", str(photos / "masks"), "-c", str(config), "--api-url", api.url,
            "--rate", "600", "--progress", "none", "--include", "a.jpg"]
    with webhook() as hook:
        result = run_cli(*args, "-o", str(tmp_path / "out1"), "--notify", hook.url, key=CANARY_KEY)
        assert result.returncode == 1
        [body] = hook.bodies
        assert body["exit_code"] == 1 and body["counts"]["failed"] == 1 and "1 failed; exit code 1" in body["text"]
        assert body["failures"][0]["path"] == "a.jpg"
        assert CANARY_KEY not in json.dumps(body) and "secret-token" not in result.stderr

        hook.statuses = [500, 500, 500]
        broken = run_cli(*args, "-o", str(tmp_path / "out2"), "--notify", hook.url, key=CANARY_KEY)
        assert broken.returncode == 1 and len(hook.bodies) == 4
        assert "the notification could not be sent" in broken.stderr and "secret-token" not in broken.stderr

        good = emulator(key=CANARY_KEY)
        quiet = [*args[:-1], "b.jpg"]
        quiet[quiet.index(api.url)] = good.url
        ok = run_cli(*quiet, "-o", str(tmp_path / "out3"), "--notify", hook.url, key=CANARY_KEY)
        assert ok.returncode == 0 and len(hook.bodies) == 4  # a run that went well says nothing by default
        ok = run_cli(*quiet, "-o", str(tmp_path / "out4"), "--notify", hook.url, "--notify-on", "always", key=CANARY_KEY)
        assert ok.returncode == 0 and hook.bodies[-1]["exit_code"] == 0 and len(hook.bodies) == 5
    gone = run_cli(*args, "-o", str(tmp_path / "out5"), "--notify", hook.url, "--log-format", "json", key=CANARY_KEY)
    assert gone.returncode == 1
    [notified] = [e for e in _events(gone.stderr) if e["event"] == "notify"]
    assert notified["sent"] is False and notified["to"].endswith("/***") and "secret-token" not in gone.stderr


def _watch(data: Path, out: Path, url: str, *extra: str):  # type: ignore[no-untyped-def]
    return start_cli("watch", str(data / "photos"), "--masks", str(data / "masks"), "-o", str(out), "--api-url", url,
                     "--rate", "600", "--log-format", "json", *extra, key=CANARY_KEY)


def test_watch_sends_a_slow_copy_once_whole_and_an_image_when_its_mask_arrives(emulator, tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    (data / "photos").mkdir(parents=True)
    (data / "masks").mkdir()
    api = emulator(key=CANARY_KEY)
    watch = _watch(data, out, api.url, "--settle", "1.5")
    try:
        time.sleep(1.5)
        shutil.copyfile(SAMPLES / "masks" / "coffee.png", data / "masks" / "coffee.png")
        copy_slowly(SAMPLES / "photos" / "coffee.jpg", data / "photos" / "coffee.jpg")  # 3 s, in five pieces
        shutil.copyfile(SAMPLES / "photos" / "astronaut.jpg", data / "photos" / "astronaut.jpg")  # no mask yet
        assert wait_for(lambda: (out / "coffee.png").exists(), timeout=30)
        time.sleep(2.5)
        assert not (out / "astronaut.png").exists() and api.charged() == 1
        shutil.copyfile(SAMPLES / "masks" / "astronaut.png", data / "masks" / "astronaut.png")
        assert wait_for(lambda: (out / "astronaut.png").exists(), timeout=30)
    finally:
        watch.send_signal(signal.SIGTERM)
        stdout, stderr = watch.communicate(timeout=60)
    assert watch.returncode == 143, stderr
    events = _events(stderr)
    assert events[0]["event"] == "watch_started" and events[-1]["event"] == "watch_stopped"
    done = [e["path"] for e in events if e["event"] == "item_done"]
    assert sorted(done) == ["astronaut.jpg", "coffee.jpg"]  # each once
    assert not [e for e in events if e["event"] in ("item_invalid", "item_failed")]  # no half picture was ever looked at
    assert api.charged() == len(api.entries()) == 2
    for name in ("coffee", "astronaut"):
        check_output(data / "photos" / f"{name}.jpg", data / "masks" / f"{name}.png", out / f"{name}.png")
    assert _export(out)["astronaut.jpg"]["status"] == "done"
    # the report is written at most once a minute while watching, and whole when the watch stops
    report = out / ".batch-inpaint" / "report"
    assert "astronaut.jpg" in (report / "data" / "items-0.js").read_text()
    assert (report / "thumbs").is_dir() and len(list((report / "thumbs").rglob("*.jpg"))) == 2


def test_sigterm_during_a_request_ends_the_watch_with_the_item_recorded(emulator, photos: Path, tmp_path: Path) -> None:
    api = emulator("--latency-mean", "3", key=CANARY_KEY)
    out = tmp_path / "out"
    time.sleep(0.6)  # the pairs were just written: let them settle
    watch = _watch(photos, out, api.url, "--settle", "0.5", "--include", "a.jpg")
    try:
        assert wait_for(lambda: _status(out, "a.jpg") == "in_flight", timeout=30)
    finally:
        watch.send_signal(signal.SIGTERM)
        stdout, stderr = watch.communicate(timeout=60)
    assert watch.returncode == 143, stderr
    assert _export(out)["a.jpg"]["status"] == "done" and api.charged() == 1
    [photo, mask, rel] = next(p for p in pairs_of(photos) if p[2] == "a.png")
    check_output(photo, mask, out / rel)
    events = _events(stderr)
    assert [e["event"] for e in events if e["event"] in ("item_done", "watch_stopped")] == ["item_done", "watch_stopped"]


def _status(out: Path, key: str) -> str | None:
    import sqlite3

    path = out / ".batch-inpaint" / "manifest.sqlite3"
    if not path.exists():
        return None
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            row = db.execute("SELECT status FROM items WHERE key = ?", (key,)).fetchone()
    except sqlite3.OperationalError:  # the watch is still creating the manifest's tables
        return None
    return None if row is None else str(row[0])


def test_watch_by_polling_sees_a_pair_arrive(emulator, tmp_path: Path) -> None:
    """--poll, as on NFS or a FUSE mount, where the file system raises no event."""
    data, out = tmp_path / "data", tmp_path / "out"
    (data / "photos" / "sub").mkdir(parents=True)
    (data / "masks" / "sub").mkdir(parents=True)
    api = emulator(key=CANARY_KEY)
    watch = _watch(data, out, api.url, "--settle", "0.5", "--poll")
    try:
        time.sleep(1)
        shutil.copyfile(SAMPLES / "masks" / "coffee.png", data / "masks" / "sub" / "coffee.png")
        shutil.copyfile(SAMPLES / "photos" / "coffee.jpg", data / "photos" / "sub" / "coffee.jpg")
        assert wait_for(lambda: (out / "sub" / "coffee.png").exists(), timeout=30)
    finally:
        watch.send_signal(signal.SIGINT)
        stdout, stderr = watch.communicate(timeout=60)
    assert watch.returncode == 130, stderr
    events = _events(stderr)
    assert events[0]["event"] == "watch_started" and events[0]["polling"] is True
    assert api.charged() == 1


def test_a_run_that_cannot_start_says_why_in_one_json_line(tmp_path: Path, photos: Path) -> None:
    result = run_cli("run", str(photos / "photos"), "--masks", str(photos / "masks"), "-o", str(tmp_path / "out"),
                     BATCH_INPAINT_LOG_FORMAT="json")
    assert result.returncode == 2
    [event] = _events(result.stderr)
    assert event["event"] == "error" and event["exit_code"] == 2 and "no API key" in event["message"]
