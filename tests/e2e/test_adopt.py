"""Outputs that exist without a record (a lost manifest, a folder cleaned by another tool) are never paid
for again unless asked: taken as done when newer than their inputs, or always with --adopt-existing."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from PIL import Image

from ..conftest import run_cli


def _args(photos: Path, out: Path, url: str) -> list[str]:
    return [str(photos / "photos"), "--masks", str(photos / "masks"), "--out", str(out), "--api-url", url]


def _statuses(out: Path) -> list[str]:
    with sqlite3.connect(out / ".batch-inpaint" / "manifest.sqlite3") as db:
        return [row[0] for row in db.execute("SELECT status FROM items")]


def test_a_lost_manifest_costs_nothing(emulator, photos: Path, tmp_path: Path) -> None:
    emu = emulator()
    out = tmp_path / "out"
    assert run_cli("run", *_args(photos, out, emu.url), "--rate", "600", key="test-key").returncode == 0
    shutil.rmtree(out / ".batch-inpaint")
    plan = run_cli("plan", *_args(photos, out, emu.url), key="test-key")
    assert "credits needed: 0 " in plan.stdout and "taken as done (no request; --force redoes them): 8" in plan.stdout
    again = run_cli("run", *_args(photos, out, emu.url), "--progress", "none", key="test-key")
    assert again.returncode == 0, again.stderr
    assert emu.charged() == 8  # nothing more
    assert "8 already in the output folder, taken as done" in again.stderr
    assert _statuses(out) == ["done"] * 8
    # the adopted outputs are on record now: an edited mask makes exactly that item due, as always
    with Image.open(photos / "masks" / "b.png") as m:
        edited = m.copy()
    edited.paste(255, (0, 0, 16, 16))
    edited.save(photos / "masks" / "b.png")
    plan = run_cli("plan", *_args(photos, out, emu.url), key="test-key").stdout
    assert "credits needed: 1 " in plan and "already done (skipped): 7" in plan


def test_outputs_older_than_their_inputs_are_redone_unless_adopted(emulator, photos: Path, tmp_path: Path) -> None:
    emu = emulator()
    out = tmp_path / "out"
    assert run_cli("run", *_args(photos, out, emu.url), "--rate", "600", key="test-key").returncode == 0
    shutil.rmtree(out / ".batch-inpaint")
    for photo in (photos / "photos").rglob("*.jpg"):  # every photo edited after its output was made
        os.utime(photo, ns=(photo.stat().st_atime_ns, photo.stat().st_mtime_ns + 10**12))
    assert "credits needed: 8 " in run_cli("plan", *_args(photos, out, emu.url), key="test-key").stdout
    adopted = run_cli("plan", *_args(photos, out, emu.url), "--adopt-existing", key="test-key")
    assert "credits needed: 0 " in adopted.stdout
    forced = run_cli("run", *_args(photos, out, emu.url), "--rate", "600", "--force", key="test-key")
    assert forced.returncode == 0 and emu.charged() == 16, forced.stderr
