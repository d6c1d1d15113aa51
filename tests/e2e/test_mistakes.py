"""A user's mistakes the tool can catch cost nothing: folders in the wrong role, options that contradict."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..conftest import run_cli

def test_an_output_folder_inside_the_masks_folder_is_refused_before_any_request(emulator, photos: Path) -> None:
    emu = emulator()
    for out in (photos / "masks", photos / "masks" / "cleaned"):
        result = run_cli("run", str(photos / "photos"), "--masks", str(photos / "masks"), "--out", str(out),
                         "--api-url", emu.url, key="test-key")
        assert result.returncode == 2, result.stderr
        assert "masks folder" in result.stderr and str(out) in result.stderr
    assert emu.entries() == []

def test_a_masks_folder_equal_to_the_input_is_refused(emulator, photos: Path, tmp_path: Path) -> None:
    emu = emulator()
    result = run_cli("run", str(photos / "photos"), "--masks", str(photos / "photos"), "--out", str(tmp_path / "o"),
                     "--api-url", emu.url, key="test-key")
    assert result.returncode == 2, result.stderr
    assert "paired with itself" in result.stderr
    assert emu.entries() == []

def test_a_masks_folder_inside_the_input_is_not_walked_as_pictures(emulator, photos: Path, tmp_path: Path) -> None:
    emu = emulator()
    shutil.move(str(photos / "masks"), str(photos / "photos" / "masks"))
    out = tmp_path / "out"
    result = run_cli("run", str(photos / "photos"), "--masks", str(photos / "photos" / "masks"), "--out", str(out),
                     "--api-url", emu.url, "--rate", "600", key="test-key")
    assert result.returncode == 0, result.stderr
    assert emu.charged() == 8  # the eight photos, not the eight masks as well
    assert not (out / "masks").exists()
    assert "is inside the input folder" in result.stderr

def test_options_that_contradict_each_other_are_a_usage_error_naming_both(emulator, photos: Path,
                                                                          tmp_path: Path) -> None:
    emu = emulator()
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"{photos / 'photos' / 'a.jpg'},{photos / 'masks' / 'a.png'}\n")
    cases = [
        (["run", str(photos / "photos"), "--masks", str(photos / "masks"), "--mask", str(photos / "masks" / "a.png")],
         ("--mask", "--masks")),
        (["run", str(photos / "photos"), "--pairs", str(pairs)], ("--pairs", "input folder")),
    ]
    for args, named in cases:
        result = run_cli(*args, "--out", str(tmp_path / "out"), "--api-url", emu.url, key="test-key")
        assert result.returncode == 2, result.stderr
        assert all(name in result.stderr for name in named), result.stderr
    assert emu.entries() == []
