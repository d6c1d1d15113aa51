"""Kill it at any moment, run it again, pay for nothing twice: real subprocesses, a real SQLite file."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from batch_inpaint.synthetic import write_tree

from ..conftest import run_cli, start_cli, wait_for
from .helpers import FAST_RETRIES, check_output, pairs_of, write_config


def args(data: Path, out: Path, url: str, *extra: str) -> list[str]:
    return ["run", str(data / "photos"), "--masks", str(data / "masks"), "--out", str(out), "--api-url", url,
            "--progress", "lines", *extra]


def manifest_rows(out: Path) -> list[sqlite3.Row]:
    db = sqlite3.connect(out / ".batch-inpaint" / "manifest.sqlite3")
    db.row_factory = sqlite3.Row
    try:
        return list(db.execute("SELECT * FROM items ORDER BY key"))
    finally:
        db.close()


def done_count(out: Path) -> int:
    try:
        return sum(1 for r in manifest_rows(out) if r["status"] == "done")
    except sqlite3.Error:
        return 0


def test_a_rerun_sends_nothing_and_an_edited_mask_is_the_only_item_due(emulator, photos: Path, tmp_path: Path) -> None:
    emu = emulator()
    out = tmp_path / "out"
    assert run_cli(*args(photos, out, emu.url, "--rate", "600"), key="test-key").returncode == 0
    assert emu.charged() == 8
    again = run_cli(*args(photos, out, emu.url, "--rate", "600"), key="test-key")
    assert again.returncode == 0 and "8 already done" in again.stderr
    assert len(emu.entries()) == 8
    # touching a file without changing it costs nothing either
    os.utime(photos / "photos" / "a.jpg")
    assert run_cli(*args(photos, out, emu.url, "--rate", "600"), key="test-key").returncode == 0
    assert len(emu.entries()) == 8
    # a new mask makes exactly that item due
    mask = photos / "masks" / "sub" / "f.png"
    from PIL import Image, ImageDraw

    with Image.open(mask) as m:
        edited = m.copy()
    ImageDraw.Draw(edited).rectangle((0, 0, 20, 20), fill=255)
    edited.save(mask)
    result = run_cli(*args(photos, out, emu.url, "--rate", "600"), key="test-key")
    assert result.returncode == 0 and "1 done" in result.stderr and "7 already done" in result.stderr
    assert len(emu.entries()) == 9
    check_output(photos / "photos" / "sub" / "f.jpg", mask, out / "sub" / "f.png")
    # a deleted output, or other output-shaping settings, make items due again
    (out / "b.png").unlink()
    result = run_cli(*args(photos, out, emu.url, "--rate", "600"), key="test-key")
    assert "1 done" in result.stderr and len(emu.entries()) == 10
    result = run_cli(*args(photos, out, emu.url, "--rate", "600", "--mode", "quality"), key="test-key")
    assert "8 done" in result.stderr and len(emu.entries()) == 18


def test_identical_pairs_are_sent_once(emulator, tmp_path: Path) -> None:
    write_tree(tmp_path / "data", ["a", "b"], size=(120, 90), seed=1)
    for name in ("copy1", "copy2"):
        (tmp_path / "data" / "photos" / f"{name}.jpg").write_bytes((tmp_path / "data" / "photos" / "a.jpg").read_bytes())
        (tmp_path / "data" / "masks" / f"{name}.png").write_bytes((tmp_path / "data" / "masks" / "a.png").read_bytes())
    emu = emulator()
    out = tmp_path / "out"
    result = run_cli(*args(tmp_path / "data", out, emu.url, "--rate", "600"), key="test-key")
    assert result.returncode == 0, result.stderr
    assert emu.charged() == 2
    assert (out / "copy1.png").read_bytes() == (out / "a.png").read_bytes() == (out / "copy2.png").read_bytes()


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume(emulator, tmp_path: Path) -> None:
    names = [f"k{i:02d}" for i in range(60)]  # 12 s of work at 300/min: many more rounds than kills needed
    write_tree(tmp_path / "data", names, size=(160, 120), seed=2)
    emu = emulator("--rate", "100000", "--latency-mean", "0.15", "--latency-spread", "0.5")
    out = tmp_path / "out"
    config = write_config(tmp_path / "c.toml", **FAST_RETRIES)
    rng = random.Random(1234)
    in_flight_at_kills = 0
    kills = 0
    while kills < 10:
        proc = start_cli(*args(tmp_path / "data", out, emu.url, "--rate", "300", "--config", str(config)), key="test-key")
        try:
            proc.wait(timeout=rng.uniform(0.6, 1.6))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            kills += 1
            in_flight_at_kills += sum(1 for r in _rows_or_empty(out) if r["status"] == "in_flight")
            continue
        _, stderr = proc.communicate()
        assert proc.returncode == 0, stderr
        break
    assert kills >= 5, "the runs finished before they could be killed often enough"
    resumed = run_cli(*args(tmp_path / "data", out, emu.url, "--rate", "1200", "--config", str(config)), key="test-key")
    assert resumed.returncode == 0, resumed.stderr
    final = run_cli(*args(tmp_path / "data", out, emu.url, "--rate", "1200", "--config", str(config)), key="test-key")
    assert final.returncode == 0 and "60 already done" in final.stderr
    for photo, mask, rel in pairs_of(tmp_path / "data"):
        check_output(photo, mask, out / rel)
    assert [p for p in out.rglob("*.part")] == []
    assert emu.charged() <= len(names) + in_flight_at_kills
    assert sqlite3.connect(out / ".batch-inpaint" / "manifest.sqlite3").execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_out_of_credits_stops_with_4_and_the_next_run_continues(emulator, photos: Path, tmp_path: Path) -> None:
    poor = emulator(credits=3)
    out = tmp_path / "out"
    result = run_cli(*args(photos, out, poor.url, "--concurrency", "1", "--rate", "600"), key="test-key")
    assert result.returncode == 4, result.stderr
    assert "out of credits" in result.stderr
    assert done_count(out) == 3
    statuses = {r["status"] for r in manifest_rows(out)}
    assert statuses <= {"done", "pending"}
    rich = emulator()
    result = run_cli(*args(photos, out, rich.url, "--rate", "600"), key="test-key")
    assert result.returncode == 0, result.stderr
    assert rich.charged() == 5
    for photo, mask, rel in pairs_of(photos):
        check_output(photo, mask, out / rel)


def test_max_credits_budget(emulator, photos: Path, tmp_path: Path) -> None:
    emu = emulator()
    out = tmp_path / "out"
    result = run_cli(*args(photos, out, emu.url, "--rate", "600", "--max-credits", "3"), key="test-key")
    assert result.returncode == 4 and "budget" in result.stderr
    assert emu.charged() == 3 and len(emu.entries()) == 3
    result = run_cli(*args(photos, out, emu.url, "--rate", "600", "--max-credits", "100"), key="test-key")
    assert result.returncode == 0 and emu.charged() == 8


def test_a_rejected_key_leaves_a_consistent_manifest(emulator, photos: Path, tmp_path: Path) -> None:
    emu = emulator()
    out = tmp_path / "out"
    assert run_cli(*args(photos, out, emu.url), key="wrong").returncode == 3
    assert all(r["status"] == "pending" for r in manifest_rows(out))
    assert run_cli(*args(photos, out, emu.url, "--rate", "600"), key="test-key").returncode == 0
    assert emu.charged() == 8


def test_a_second_run_on_the_same_folder_exits_at_once(emulator, photos: Path, tmp_path: Path) -> None:
    emu = emulator("--latency-mean", "1.0")
    out = tmp_path / "out"
    first = start_cli(*args(photos, out, emu.url, "--rate", "60"), key="test-key")
    try:
        assert wait_for(lambda: len(emu.entries()) >= 1 or (out / ".batch-inpaint" / "run.lock").exists())
        before = len(emu.entries())
        started = time.monotonic()
        second = run_cli(*args(photos, out, emu.url, "--rate", "600"), key="test-key")
        assert second.returncode == 5
        assert time.monotonic() - started < 10
        assert f"pid {first.pid}" in second.stderr
        assert len(emu.entries()) <= before + 1  # only the first run's paced requests
    finally:
        first.kill()
        first.communicate()
    # the killed holder leaves no stale lock
    assert run_cli(*args(photos, out, emu.url, "--rate", "600"), key="test-key").returncode == 0


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_first_signal_stops_cleanly(emulator, photos: Path, tmp_path: Path, signum: int, code: int) -> None:
    emu = emulator("--latency-mean", "0.5")
    out = tmp_path / "out"
    proc = start_cli(*args(photos, out, emu.url, "--rate", "120"), key="test-key")
    assert wait_for(lambda: done_count(out) >= 2, timeout=60)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == code, stderr
    assert "stopping" in stderr
    rows = manifest_rows(out)
    assert not [r for r in rows if r["status"] == "in_flight"]  # the grace period let them finish
    done = sum(1 for r in rows if r["status"] == "done")
    assert done < 8
    charged = emu.charged()
    assert charged == done
    result = run_cli(*args(photos, out, emu.url, "--rate", "600"), key="test-key")
    assert result.returncode == 0
    assert emu.charged() == 8


def test_second_signal_stops_at_once_and_in_flight_items_are_resent(emulator, photos: Path, tmp_path: Path) -> None:
    emu = emulator("--latency-mean", "20")
    out = tmp_path / "out"
    proc = start_cli(*args(photos, out, emu.url, "--rate", "600"), key="test-key")
    assert wait_for(lambda: any(r["status"] == "in_flight" for r in _rows_or_empty(out)), timeout=30)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert time.monotonic() - started < 5
    in_flight = [r for r in manifest_rows(out) if r["status"] == "in_flight"]
    assert in_flight
    fast = emulator()
    result = run_cli(*args(photos, out, fast.url, "--rate", "600"), key="test-key")
    assert result.returncode == 0
    assert "possibly charged twice" in result.stderr


def _rows_or_empty(out: Path) -> list[sqlite3.Row]:
    try:
        return manifest_rows(out)
    except sqlite3.Error:
        return []


def test_status_and_export_list_every_item(emulator, photos: Path, tmp_path: Path) -> None:
    (photos / "masks" / "c.png").unlink()
    (photos / "photos" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (photos / "masks" / "broken.png").write_bytes((photos / "masks" / "a.png").read_bytes())
    emu = emulator()
    out = tmp_path / "out"
    result = run_cli(*args(photos, out, emu.url, "--rate", "600"), key="test-key")
    assert result.returncode == 1
    assert "broken.jpg" in result.stderr
    status = run_cli("status", str(out))
    assert status.returncode == 0
    assert "done 7" in status.stdout and "invalid 1" in status.stdout and "no_mask 1" in status.stdout
    assert "credits used, all runs: 7" in status.stdout
    assert "broken.jpg" in status.stdout
    exported = run_cli("export", str(out), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert len(rows) == 9
    by_key = {r["key"]: r for r in rows}
    assert by_key["c.jpg"]["status"] == "no_mask"
    assert by_key["broken.jpg"]["status"] == "invalid" and by_key["broken.jpg"]["error"]
    assert by_key["a.jpg"]["output_path"] == str(out / "a.png") and by_key["a.jpg"]["credits"] == "1"
    jsonl = run_cli("export", str(out), "--format", "jsonl")
    assert len([json.loads(line) for line in jsonl.stdout.splitlines()]) == 9
