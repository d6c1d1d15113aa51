"""Pay only when what is sent changes: a setting that leaves a request as it was, or a new output format,
costs no credit; `plan` says so exactly."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from ..conftest import run_cli
from .helpers import check_output, pairs_of


def _run(photos: Path, out: Path, url: str, *extra: str):  # type: ignore[no-untyped-def]
    return run_cli("run", str(photos / "photos"), "--masks", str(photos / "masks"), "--out", str(out),
                   "--api-url", url, "--rate", "600", "--progress", "none", *extra, key="test-key")


def _plan(photos: Path, out: Path, url: str, *extra: str) -> str:
    """The answers were bought from ``url``: an answer from another endpoint is another request's."""
    result = run_cli("plan", str(photos / "photos"), "--masks", str(photos / "masks"), "--out", str(out),
                     "--api-url", url, *extra, key="test-key")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_fixing_one_mask_pays_for_that_mask_only(emulator, photos: Path, tmp_path: Path) -> None:
    mask = photos / "masks" / "c.png"
    with Image.open(mask) as m:
        m.resize((160, 120)).save(mask)  # half the image's size: invalid without --resize-mask
    emu = emulator()
    out = tmp_path / "out"
    first = _run(photos, out, emu.url)
    assert first.returncode == 1 and emu.charged() == 7, first.stderr
    assert "credits needed: 1 " in _plan(photos, out, emu.url, "--resize-mask")
    second = _run(photos, out, emu.url, "--resize-mask")
    assert second.returncode == 0, second.stderr
    assert emu.charged() == 8  # the one fixed mask, not all eight again
    assert "7 made again from answers already paid for" in second.stderr
    for photo, mask_file, rel in pairs_of(photos):
        if photo.stem != "c":
            check_output(photo, mask_file, out / rel)


def test_a_new_output_format_reencodes_the_answers_already_paid_for(emulator, photos: Path, tmp_path: Path) -> None:
    emu = emulator()
    out = tmp_path / "out"
    assert _run(photos, out, emu.url).returncode == 0
    plan = _plan(photos, out, emu.url, "--output-format", "jpg")
    assert "credits needed: 0 " in plan and "no request): 8" in plan
    to_jpg = _run(photos, out, emu.url, "--output-format", "jpg", "--quality", "95")
    assert to_jpg.returncode == 0, to_jpg.stderr
    assert emu.charged() == 8  # nothing more
    for photo, mask, rel in pairs_of(photos):
        check_output(photo, mask, out / Path(rel).with_suffix(".jpg"))
    # the JPEGs are not the answers: those were kept, so the next change is free too, and says what it costs
    assert "answers kept for a later change of output format: 8" in to_jpg.stderr
    assert len(list((out / ".batch-inpaint" / "answers").glob("*.png"))) == 8
    to_webp = _run(photos, out, emu.url, "--output-format", "webp")
    assert to_webp.returncode == 0 and emu.charged() == 8, to_webp.stderr
    for photo, mask, rel in pairs_of(photos):
        check_output(photo, mask, out / Path(rel).with_suffix(".webp"))


def test_without_kept_answers_a_format_change_is_paid_and_plan_says_so(emulator, photos: Path,
                                                                       tmp_path: Path) -> None:
    emu = emulator()
    out = tmp_path / "out"
    assert _run(photos, out, emu.url, "--output-format", "jpg", "--no-keep-answers").returncode == 0
    assert not (out / ".batch-inpaint" / "answers").exists()
    assert "credits needed: 8 " in _plan(photos, out, emu.url, "--output-format", "webp")


def test_an_edited_output_is_not_taken_for_the_answer(emulator, photos: Path, tmp_path: Path) -> None:
    emu = emulator()
    out = tmp_path / "out"
    assert _run(photos, out, emu.url).returncode == 0
    with Image.open(out / "a.png") as im:
        im.rotate(90).save(out / "a.png")  # the user touched up one result by hand
    assert "credits needed: 1 " in _plan(photos, out, emu.url, "--output-format", "jpg")
