"""An outage is the run's problem, not the items': exit 7, items left pending, nothing counted as paid twice;
items that ran out of attempts on server errors come back by themselves in the next runs."""

from __future__ import annotations

import socket
import sqlite3
import time
from pathlib import Path

from ..conftest import run_cli
from .helpers import FAST_RETRIES, check_output, pairs_of, write_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _statuses(out: Path) -> dict[str, str]:
    with sqlite3.connect(out / ".batch-inpaint" / "manifest.sqlite3") as db:
        return dict(db.execute("SELECT key, status FROM items"))


def _run(photos: Path, out: Path, url: str, *extra: str):  # type: ignore[no-untyped-def]
    config = write_config(out.parent / "fast.toml", **FAST_RETRIES)
    return run_cli("run", str(photos / "photos"), "--masks", str(photos / "masks"), "--out", str(out),
                   "--api-url", url, "--rate", "600", "--progress", "lines", "--config", str(config), *extra,
                   key="test-key")


def test_an_unreachable_api_stops_the_run_with_exit_7_and_leaves_every_item_pending(emulator, photos: Path,
                                                                                    tmp_path: Path) -> None:
    out = tmp_path / "out"
    started = time.monotonic()
    down = _run(photos, out, f"http://127.0.0.1:{_free_port()}/cleanup/v1", "--outage-seconds", "3")
    assert down.returncode == 7, down.stderr
    assert time.monotonic() - started < 60
    assert "could not be reached" in down.stderr
    assert "possibly charged twice" not in down.stderr  # no connection was ever made: nothing can be charged
    assert set(_statuses(out).values()) == {"pending"}
    assert "failed" not in down.stderr.split("requests")[0]

    emu = emulator()  # the API is back: the next run does everything, no --retry-failed needed
    back = _run(photos, out, emu.url)
    assert back.returncode == 0, back.stderr
    assert emu.charged() == 8
    for photo, mask, rel in pairs_of(photos):
        check_output(photo, mask, out / rel)


def test_items_that_ran_out_of_attempts_on_server_errors_come_back_for_a_few_runs(emulator, photos: Path,
                                                                               tmp_path: Path) -> None:
    out = tmp_path / "out"
    broken = emulator("--fault", "500=1.0")
    for run in range(1, 4):
        result = _run(photos, out, broken.url, "--max-attempts", "2")
        assert result.returncode == 1, result.stderr
        assert "8 failed" in result.stderr and "the next run tries again" in result.stderr
        assert "--retry-failed" not in result.stderr
        assert len(broken.entries()) == 16 * run  # each run tried every item again, by itself
    resting = _run(photos, out, broken.url, "--max-attempts", "2")  # three runs in a row: they rest
    assert len(broken.entries()) == 48
    assert resting.returncode == 1
    assert "8 failed on server or network errors in several runs in a row (retry them with --retry-failed)" \
        in resting.stderr
    healthy = emulator()
    fixed = _run(photos, out, healthy.url, "--retry-failed")
    assert fixed.returncode == 0, fixed.stderr
    assert healthy.charged() == 8
