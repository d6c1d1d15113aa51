"""The rate limit belongs to the key: runs of one key share it, on one host through a file, on many
through Postgres. Real processes against the emulator, whose sliding window counts rejected requests.

The emulator's window is 20 s instead of 60 (the clients are told with --rate-window): the same
dynamics, a third of the wait. Not shorter: a window must have room for the jitter of a loaded host
(`limiter.shared.JITTER_SECONDS`), and in a shorter one that room costs more of the rate than the
tests allow (2% here). L below is the key's limit a minute.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batch_inpaint.emulator.requestlog import busiest_window
from batch_inpaint.synthetic import write_tree

from ..conftest import cli_env, run_cli, spawn, wait_for
from ..postgres import PG_PASSWORD

WINDOW = 20.0


def tree(root: Path, count: int, seed: int) -> Path:
    write_tree(root, [f"img{i:03d}" for i in range(count)], size=(64, 48), seed=seed)
    return root


def start(data: Path, out: Path, url: str, rate: float, *extra: str, key: str = "test-key",
          prefix: tuple[str, ...] = (), **env: str) -> subprocess.Popen[str]:
    cmd = [*prefix, sys.executable, "-m", "batch_inpaint", "run", str(data / "photos"), "--masks", str(data / "masks"),
           "--out", str(out), "--api-url", url, "--rate", f"{rate:g}", "--rate-window", f"{WINDOW:g}",
           "--progress", "lines", *extra]
    return spawn(cmd, cli_env(key, **env))


def finish(procs: list[subprocess.Popen[str]], timeout: float = 240) -> list[str]:
    errors = []
    for proc in procs:
        _, err = proc.communicate(timeout=timeout)
        errors.append(err)
    return errors


def sent_times(emu, key_index: int | None = None) -> list[float]:  # type: ignore[no-untyped-def]
    entries = [e for e in emu.entries() if e.get("key") is not None]
    if key_index is not None:
        names = sorted({e["key"] for e in entries})
        entries = [e for e in entries if e["key"] == names[key_index]]
    return sorted(e["t"] for e in entries)


def middle_rate(times: list[float]) -> float:
    """Requests a minute between the 10th and the 90th percentile: while every run is sending, without
    the staggered starts and ends."""
    lo, hi = int(len(times) * 0.1), int(len(times) * 0.9)
    return (hi - lo) / (times[hi] - times[lo]) * 60.0


def check_never_above(emu, limit: float) -> int:  # type: ignore[no-untyped-def]
    times = sent_times(emu)
    busiest = busiest_window(times, WINDOW)
    assert busiest <= limit * WINDOW / 60.0, f"{busiest} requests in one {WINDOW:g} s window, limit {limit:g}/min"
    rejected = sum(1 for e in emu.entries() if e["status"] == 429)
    return rejected


@pytest.mark.slow
def test_three_runs_of_one_key_share_its_limit(emulator, tmp_path: Path, figures) -> None:
    limit = 300.0
    emu = emulator("--rate", f"{limit:g}", "--window-seconds", f"{WINDOW:g}", "--work", "stub")
    procs = [start(tree(tmp_path / f"data{i}", 50, seed=i), tmp_path / f"out{i}", emu.url, limit) for i in range(3)]
    errors = finish(procs)
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    rejected = check_never_above(emu, limit)
    achieved = middle_rate(sent_times(emu))
    figures("three runs, one key, host", "achieved / L, 429s", f"{achieved / limit:.3f}, {rejected}")
    assert rejected == 0
    assert achieved >= 0.95 * limit
    # each run was told, once, that it shares the key's limit
    assert sum("sharing this key's rate limit with" in err for err in errors) >= 2
    assert all(err.count("sharing this key's rate limit with") <= 1 for err in errors)


@pytest.mark.slow
def test_a_run_killed_with_kill_9_leaves_its_share_to_the_others(emulator, tmp_path: Path, figures) -> None:
    limit = 600.0
    emu = emulator("--rate", f"{limit:g}", "--window-seconds", f"{WINDOW:g}", "--work", "stub")
    procs = [start(tree(tmp_path / f"data{i}", 80, seed=i), tmp_path / f"out{i}", emu.url, limit) for i in range(3)]
    assert wait_for(lambda: len(sent_times(emu)) >= 60, timeout=60)
    procs[0].kill()
    killed_at = time.time()
    errors = finish(procs[1:])
    procs[0].communicate()
    assert [p.returncode for p in procs[1:]] == [0, 0], errors
    rejected = check_never_above(emu, limit)
    after = [t for t in sent_times(emu) if t > killed_at + 3 * 60.0 / limit]  # within a few slots
    rate = middle_rate(after)
    figures("kill -9 of one of three runs", "rate of the two left / L, 429s", f"{rate / limit:.3f}, {rejected}")
    assert rejected == 0
    assert rate >= 0.93 * limit


@pytest.mark.slow
def test_two_keys_each_get_their_own_full_rate(emulator, tmp_path: Path) -> None:
    limit = 300.0
    emu = emulator("--rate", f"{limit:g}", "--window-seconds", f"{WINDOW:g}", "--work", "stub",
                   "--key", "key-one=1000", "--key", "key-two=1000")
    procs = [start(tree(tmp_path / f"data{i}", 60, seed=i), tmp_path / f"out{i}", emu.url, limit, key=key)
             for i, key in enumerate(["key-one", "key-two"])]
    errors = finish(procs)
    assert [p.returncode for p in procs] == [0, 0], errors
    for index in (0, 1):
        assert middle_rate(sent_times(emu, index)) >= 0.95 * limit
    assert not any("sharing this key's rate limit" in err for err in errors)
    assert sum(1 for e in emu.entries() if e["status"] == 429) == 0


@pytest.mark.slow
def test_the_smallest_rate_given_wins_while_runs_overlap(emulator, tmp_path: Path) -> None:
    emu = emulator("--rate", "600", "--window-seconds", f"{WINDOW:g}", "--work", "stub")
    # the fast run, sharing slots with the slow one, ends well before it: they overlap all along
    slow = start(tree(tmp_path / "data0", 60, seed=0), tmp_path / "out0", emu.url, 240)
    assert wait_for(lambda: len(sent_times(emu)) >= 2, timeout=60)
    fast = start(tree(tmp_path / "data1", 20, seed=1), tmp_path / "out1", emu.url, 600)
    slow_err, fast_err = finish([slow, fast])
    assert (slow.returncode, fast.returncode) == (0, 0), (slow_err, fast_err)
    # both ran at once: never above the smaller rate, though the key (and the fast run) allow 600
    assert busiest_window(sent_times(emu), WINDOW) <= 240 * WINDOW / 60.0
    assert fast_err.count("another run of this key asks for --rate 240") == 1
    assert f"writing {(tmp_path / 'out0').resolve()}" in fast_err
    assert "asks for --rate" not in slow_err


def test_status_shows_the_runs_sharing_the_key(emulator, tmp_path: Path) -> None:
    emu = emulator("--rate", "60", "--window-seconds", f"{WINDOW:g}", "--work", "stub")
    procs = [start(tree(tmp_path / f"data{i}", 30, seed=i), tmp_path / f"out{i}", emu.url, 60) for i in range(2)]
    try:
        assert wait_for(lambda: len(sent_times(emu)) >= 3, timeout=60)
        status = run_cli("status", str(tmp_path / "out0"))
        assert status.returncode == 0, status.stderr
        text = status.stdout
        assert "rate limit shared by 2 runs of one key" in text
        for i, proc in enumerate(procs):
            assert f"pid {proc.pid} on " in text
            assert str((tmp_path / f"out{i}").resolve()) in text
        assert "(this folder)" in text
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        finish(procs)
    after = run_cli("status", str(tmp_path / "out0"))
    assert "no run is writing to this folder now" in after.stdout


def test_a_state_folder_that_cannot_be_used_falls_back_to_pacing_alone(emulator, tmp_path: Path) -> None:
    emu = emulator("--rate", "600", "--window-seconds", f"{WINDOW:g}", "--work", "stub")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    proc = start(tree(tmp_path / "data", 6, seed=3), tmp_path / "out", emu.url, 600, XDG_STATE_HOME=str(blocker))
    (err,) = finish([proc])
    assert proc.returncode == 0, err
    assert err.count("cannot be shared with other runs on this host") == 1
    assert str(blocker) in err


def test_the_key_is_never_written_to_the_state_folder(emulator, tmp_path: Path, state_home: Path) -> None:
    from ..conftest import CANARY_KEY

    emu = emulator("--rate", "600", key=CANARY_KEY)
    proc = start(tree(tmp_path / "data", 4, seed=3), tmp_path / "out", emu.url, 600, key=CANARY_KEY)
    (err,) = finish([proc])
    assert proc.returncode == 0, err
    files = list(state_home.rglob("*"))
    assert any(f.suffix == ".json" for f in files)
    for path in files:
        assert CANARY_KEY not in path.name
        if path.is_file():
            assert CANARY_KEY not in path.read_text(errors="replace")


@pytest.mark.postgres
@pytest.mark.slow
def test_three_hosts_share_the_limit_through_postgres(emulator, tmp_path: Path, postgres, figures) -> None:
    """Three runs through --limiter postgresql://, each with a state folder of its own (as on three
    hosts), one of them on a clock 7 s ahead (a time namespace, where the kernel allows one)."""
    limit = 300.0
    emu = emulator("--rate", f"{limit:g}", "--window-seconds", f"{WINDOW:g}", "--work", "stub")
    shifted = _shifted_clock()
    procs = []
    for i in range(3):
        procs.append(start(tree(tmp_path / f"data{i}", 50, seed=i), tmp_path / f"out{i}", emu.url, limit,
                           "--limiter", postgres.url, prefix=shifted if i == 1 else (),
                           XDG_STATE_HOME=str(tmp_path / f"state{i}")))
    errors = finish(procs)
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    rejected = check_never_above(emu, limit)
    achieved = middle_rate(sent_times(emu))
    figures("three runs, one key, Postgres" + (", one clock +7 s" if shifted else ""), "achieved / L, 429s",
            f"{achieved / limit:.3f}, {rejected}")
    assert rejected == 0
    assert achieved >= 0.95 * limit
    assert sum("sharing this key's rate limit with" in err for err in errors) >= 2
    for i, err in enumerate(errors):
        assert PG_PASSWORD not in err
        manifest = (tmp_path / f"out{i}" / ".batch-inpaint" / "manifest.sqlite3").read_bytes()
        assert PG_PASSWORD.encode() not in manifest
    status = run_cli("status", str(tmp_path / "out0"), "--limiter", postgres.url)
    assert status.returncode == 0 and PG_PASSWORD not in status.stdout + status.stderr


@pytest.mark.postgres
def test_a_database_that_refuses_stops_before_any_request_and_hides_the_password(emulator, tmp_path: Path,
                                                                                 postgres) -> None:
    emu = emulator("--rate", "600")
    wrong = postgres.url.replace(PG_PASSWORD, PG_PASSWORD + "-wrong")
    result = run_cli("run", str(tree(tmp_path / "data", 3, seed=1) / "photos"), "--masks",
                     str(tmp_path / "data" / "masks"), "--out", str(tmp_path / "out"), "--api-url", emu.url,
                     "--limiter", wrong, key="test-key")
    assert result.returncode == 2
    assert "password authentication failed" in result.stderr
    assert "postgresql://batch:***@127.0.0.1" in result.stderr
    assert PG_PASSWORD not in result.stdout + result.stderr
    assert emu.entries() == []


def _shifted_clock() -> tuple[str, ...]:
    """A prefix that runs a command on a monotonic clock 7 s ahead of this one (Linux time namespaces,
    root only); empty where that is not possible, and the test still runs on a shared clock."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        return ()
    prefix = (unshare, "--time", "--monotonic", "7", "--boottime", "7")
    probe = subprocess.run([*prefix, sys.executable, "-c", "import time; print(time.monotonic())"],
                           capture_output=True, text=True)
    if probe.returncode != 0 or float(probe.stdout) < time.monotonic() + 5:
        return ()
    return prefix
