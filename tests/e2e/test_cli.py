"""The command line as a new user meets it: plan, help, summaries and status (issue "The command line a
user expects")."""

from __future__ import annotations

from pathlib import Path

from ..conftest import run_cli


def _local(photos: Path, out: Path, *extra: str) -> list[str]:
    return [str(photos / "photos"), "--masks", str(photos / "masks"), "--out", str(out), "--engine", "local", *extra]


def test_a_re_plan_counts_each_item_where_the_first_plan_did(photos: Path, tmp_path: Path) -> None:
    (photos / "masks" / "b.png").unlink()  # b has no mask
    out = tmp_path / "out"
    first = run_cli("plan", *_local(photos, out))
    assert run_cli("run", *_local(photos, out, "--progress", "none")).returncode == 0
    again = run_cli("plan", *_local(photos, out))
    assert "without a mask: 1;" in first.stdout and "without a mask: 1;" in again.stdout
    assert "already done (skipped): 7" in again.stdout  # not 8: b is not done, it has no mask
    assert again.returncode == first.returncode == 0


def test_plan_rounds_the_time_up_to_seconds(photos: Path, tmp_path: Path) -> None:
    done = run_cli("plan", str(photos / "photos"), "--masks", str(photos / "masks"), "--out", str(tmp_path / "out"),
                   "--rate", "600", key="test-key")
    assert "time at 600/min: about 1 s" in done.stdout  # 8 requests: 0.8 s, not "about 0.0 min"


def test_status_export_and_plan_read_a_folder_they_cannot_write(photos: Path, tmp_path: Path) -> None:
    """On a read-only file system (a bind mount made read-only in a mount namespace of its own, which
    even root cannot write to): nothing is written, and each command works."""
    import shlex
    import shutil
    import subprocess
    import sys

    import pytest

    out = tmp_path / "out"
    assert run_cli("run", *_local(photos, out, "--progress", "none")).returncode == 0
    unshare = shutil.which("unshare")
    mount = f"mount --bind {shlex.quote(str(tmp_path))} {shlex.quote(str(tmp_path))} && " \
            f"mount -o remount,bind,ro {shlex.quote(str(tmp_path))}"
    probe = subprocess.run([unshare or "unshare", "-m", "sh", "-c", f"{mount} && ! touch {shlex.quote(str(out))}/x"],
                           capture_output=True, text=True) if unshare else None
    if probe is None or probe.returncode != 0:
        pytest.skip("no read-only bind mount here (needs unshare -m, as root)")

    def read_only(*args: str) -> subprocess.CompletedProcess[str]:
        command = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "batch_inpaint", *args))
        return subprocess.run([unshare, "-m", "sh", "-c", f"{mount} && exec {command}"], capture_output=True,
                              text=True, timeout=120)

    before = sorted(p.name for p in (out / ".batch-inpaint").iterdir())
    status = read_only("status", str(out))
    assert status.returncode == 0 and "done 8" in status.stdout, status.stderr
    export = read_only("export", str(out))
    assert export.returncode == 0 and export.stdout.count("\n") == 9, export.stderr
    plan = read_only("plan", *_local(photos, out))
    assert plan.returncode == 0 and "already done (skipped): 8" in plan.stdout, plan.stderr
    assert sorted(p.name for p in (out / ".batch-inpaint").iterdir()) == before
