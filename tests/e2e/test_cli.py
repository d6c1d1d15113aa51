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


def test_images_without_a_mask_are_named_and_long_lists_say_how_many_more(tmp_path: Path) -> None:
    from batch_inpaint.synthetic import write_tree

    write_tree(tmp_path / "data", [f"img{i:02d}" for i in range(60)], size=(32, 24), seed=4)
    for i in range(55):  # 55 images without a mask: 50 named, then "and 5 more"
        (tmp_path / "data" / "masks" / f"img{i:02d}.png").unlink()
    out = tmp_path / "out"
    run = run_cli("run", *_local(tmp_path / "data", out, "--progress", "none"))
    assert run.returncode == 0, run.stderr
    assert "  without a mask: img00.jpg" in run.stderr and "  without a mask: img49.jpg" in run.stderr
    assert "  without a mask: img50.jpg" not in run.stderr
    assert "... and 5 more without a mask" in run.stderr
    assert "requests" not in run.stderr  # the local engine sends none
    status = run_cli("status", str(out)).stdout
    assert "  without a mask: img00.jpg" in status and "... and 5 more without a mask" in status


def test_masks_of_images_left_out_by_include_are_not_orphans(photos: Path, tmp_path: Path) -> None:
    done = run_cli("run", *_local(photos, tmp_path / "out", "--include", "a.jpg", "--progress", "none"))
    assert done.returncode == 0, done.stderr
    assert "without an image" not in done.stderr
    (photos / "photos" / "b.jpg").unlink()  # b's mask is now a real orphan
    again = run_cli("run", *_local(photos, tmp_path / "out", "--progress", "none"))
    assert "mask without an image: " in again.stderr and "b.png" in again.stderr


def test_a_run_stopped_by_a_rejected_key_does_not_say_nothing_to_do(photos: Path, tmp_path: Path, emulator) -> None:
    emu = emulator()
    done = run_cli("run", str(photos / "photos"), "--masks", str(photos / "masks"), "--out", str(tmp_path / "out"),
                   "--api-url", emu.url, "--progress", "none", key="not-the-key")
    assert done.returncode == 3, done.stderr
    assert "nothing to do" not in done.stderr
    assert "left pending (the next run continues)" in done.stderr


def test_export_gives_absolute_paths_and_iso_times(photos: Path, tmp_path: Path, monkeypatch) -> None:
    import csv
    import io
    import os

    monkeypatch.chdir(tmp_path)  # relative paths on the command line, export read from elsewhere
    rel = os.path.relpath(photos, tmp_path)
    assert run_cli("run", f"{rel}/photos", "--masks", f"{rel}/masks", "--out", "out", "--engine", "local",
                   "--progress", "none").returncode == 0
    monkeypatch.chdir(photos)
    text = run_cli("export", str(tmp_path / "out")).stdout
    rows = list(csv.DictReader(io.StringIO(text)))
    row = next(r for r in rows if r["key"] == "a.jpg")
    assert row["image_path"] == str(photos / "photos" / "a.jpg")
    assert row["mask_path"] == str(photos / "masks" / "a.png")
    assert row["output_path"] == str(tmp_path / "out" / "a.png") and Path(row["output_path"]).is_file()
    assert row["finished_at"].endswith("+00:00") and row["finished_at"][:4].isdigit() and "T" in row["finished_at"]


def test_summary_json_is_one_object_on_stdout(photos: Path, tmp_path: Path) -> None:
    import json

    (photos / "masks" / "b.png").unlink()
    done = run_cli("run", *_local(photos, tmp_path / "out", "--progress", "none", "--summary", "json"))
    summary = json.loads(done.stdout)
    assert summary["exit_code"] == done.returncode == 0
    assert summary["counts"]["done"] == 7 and summary["without_mask"] == ["b.jpg"]
    assert "batch-inpaint: 8 images seen" in done.stderr  # the text summary stays on stderr for people


def test_verbose_says_each_item_and_quiet_only_the_summary(photos: Path, tmp_path: Path) -> None:
    (photos / "masks" / "b.png").write_bytes(b"not a png")
    loud = run_cli("run", *_local(photos, tmp_path / "out1", "-v", "--progress", "lines"))
    assert "batch-inpaint: done: a.jpg" in loud.stderr and "batch-inpaint: invalid: b.jpg: " in loud.stderr
    quiet = run_cli("run", *_local(photos, tmp_path / "out2"), "-q")
    assert "done: a.jpg" not in quiet.stderr and quiet.stderr.startswith("batch-inpaint: 8 images seen")
