"""A closed pipe: the reader of a run's log going away never stops the run, and `export | head` or
`plan | head` end quietly with 141, as Unix tools do. The manifest records the code the process exits with."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from batch_inpaint.synthetic import write_tree

from ..conftest import cli_env


def shell(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300, env=cli_env())


def cli() -> str:
    return f"'{sys.executable}' -m batch_inpaint"


def last_exit_code(out: Path) -> int:
    db = sqlite3.connect(out / ".batch-inpaint" / "manifest.sqlite3")
    try:
        return int(db.execute("SELECT exit_code FROM runs ORDER BY id DESC LIMIT 1").fetchone()[0])
    finally:
        db.close()


def test_a_run_whose_log_reader_goes_away_finishes_its_work(tmp_path: Path, emulator) -> None:
    """The reader takes the first progress line (after 10 s) and goes; the run has work left and
    more to say (a progress line, the summary), and finishes all of it."""
    emu = emulator("--rate", "600", "--work", "stub")
    write_tree(tmp_path / "data", [f"img{i:02d}" for i in range(40)], size=(64, 48), seed=2)
    out = tmp_path / "out"
    done = shell(f"CLIPDROP_API_KEY=test-key {cli()} run '{tmp_path / 'data' / 'photos'}' "
                 f"--masks '{tmp_path / 'data' / 'masks'}' --out '{out}' --api-url {emu.url} --rate 150 "
                 "--progress lines 2>&1 | head -1; echo \"run exited ${PIPESTATUS[0]}\"")
    assert done.stdout.strip().endswith("run exited 0"), done.stdout + done.stderr
    assert "done" in done.stdout.splitlines()[0]  # what head read: a progress line, mid-run
    assert len(list(out.rglob("*.png"))) == 40
    assert last_exit_code(out) == 0


def test_export_and_plan_into_head_end_quietly(tmp_path: Path) -> None:
    write_tree(tmp_path / "data", [f"img{i:03d}" for i in range(300)], size=(32, 24), seed=2)
    data, out = tmp_path / "data", tmp_path / "out"
    paths = f"'{data / 'photos'}' --masks '{data / 'masks'}' --out '{out}' --engine local"
    assert shell(f"{cli()} run {paths} --progress none").returncode == 0
    # a pipe holds 64 KB: 300 rows are more, so export is still writing when head has gone
    for command, codes in ((f"{cli()} export '{out}'", ("exited 141",)),
                           (f"{cli()} plan {paths} --progress none", ("exited 141", "exited 0"))):
        done = shell(f"{command} | head -1; echo \"exited ${{PIPESTATUS[0]}}\" >&2")
        assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
        assert done.stdout.count("\n") == 1
        assert done.stderr.strip().splitlines()[-1] in codes, done.stderr
