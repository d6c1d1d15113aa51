"""The real CLI in a subprocess against the emulator in another, on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from batch_inpaint.emulator.requestlog import busiest_window

from ..conftest import CANARY_KEY, run_cli
from .helpers import FAST_RETRIES, check_output, pairs_of, write_config


def run_args(data: Path, out: Path, url: str, *extra: str) -> list[str]:
    return ["run", str(data / "photos"), "--masks", str(data / "masks"), "--out", str(out), "--api-url", url,
            "--progress", "lines", *extra]


def test_a_tree_comes_out_complete_and_correct(emulator, photos: Path, tmp_path: Path) -> None:
    emu = emulator()
    out = tmp_path / "out"
    result = run_cli(*run_args(photos, out, emu.url, "--rate", "600"), key="test-key")
    assert result.returncode == 0, result.stderr
    pairs = pairs_of(photos)
    assert len(pairs) == 8
    for photo, mask, rel in pairs:
        check_output(photo, mask, out / rel)
    assert emu.charged() == 8
    assert "8 done" in result.stderr
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".part")]
    assert leftovers == []


def test_the_local_engine_needs_no_key_and_no_network(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", str(photos / "photos"), "--masks", str(photos / "masks"), "--out", str(out),
                     "--engine", "local", "--api-url", "http://127.0.0.1:9/unreachable")
    assert result.returncode == 0, result.stderr
    for photo, mask, rel in pairs_of(photos):
        check_output(photo, mask, out / rel)


def test_no_window_ever_holds_more_than_the_limit(emulator, tmp_path: Path) -> None:
    from batch_inpaint.synthetic import write_tree

    write_tree(tmp_path / "data", [f"img{i:02d}" for i in range(36)], size=(96, 72), seed=3)
    # 20 requests per 12 s is 100 per minute: the same limit, a fifth of the wait. The client is told
    # the window, as it knows a real one: it keeps slack for late requests in the window it paces for.
    emu = emulator("--rate", "100", "--window-seconds", "12", "--latency-mean", "0.3", "--latency-spread", "0.8")
    result = run_cli(*run_args(tmp_path / "data", tmp_path / "out", emu.url, "--rate", "100", "--rate-window", "12"),
                     key="test-key")
    assert result.returncode == 0, result.stderr
    entries = emu.entries()
    assert [e["status"] for e in entries].count(429) == 0
    times = sorted(e["t"] for e in entries)
    assert busiest_window(times, 12.0) <= 20
    assert len(times) == 36
    # and the limit is used: 36 evenly spaced sends at 100/min take about 21 s
    assert (times[-1] - times[0]) < 36 * 0.6 * 1.1


@pytest.mark.parametrize("fault", ["500", "502", "503", "429", "reset", "hang", "truncate", "corrupt"])
def test_every_fault_kind_still_gives_complete_uncorrupted_output(emulator, photos: Path, tmp_path: Path,
                                                                 fault: str) -> None:
    args = ["--fault", f"{fault}=0.35", "--seed", "5", "--hang-seconds", "30"]
    if fault == "429":
        args.append("--no-retry-after")
    emu = emulator(*args)
    config = write_config(tmp_path / "fast.toml", **FAST_RETRIES, max_attempts=12)
    out = tmp_path / "out"
    result = run_cli(*run_args(photos, out, emu.url, "--rate", "1200", "--config", str(config)), key="test-key")
    assert result.returncode == 0, result.stderr
    faults = [e for e in emu.entries() if e.get("fault") == fault]
    assert faults, f"the emulator injected no {fault}"
    for photo, mask, rel in pairs_of(photos):
        check_output(photo, mask, out / rel)


def test_a_rejected_key_stops_at_once_with_exit_3(emulator, photos: Path, tmp_path: Path) -> None:
    emu = emulator()
    result = run_cli(*run_args(photos, tmp_path / "out", emu.url), key="not-the-key")
    assert result.returncode == 3, result.stderr
    assert "rejected the key" in result.stderr
    assert len(emu.entries()) == 1
    assert "not-the-key" not in result.stderr + result.stdout


def test_a_missing_key_is_a_usage_error_before_any_request(emulator, photos: Path, tmp_path: Path) -> None:
    emu = emulator()
    result = run_cli(*run_args(photos, tmp_path / "out", emu.url))
    assert result.returncode == 2
    assert "CLIPDROP_API_KEY" in result.stderr
    assert emu.entries() == []


def test_the_key_file_works_and_the_key_is_never_printed(emulator, photos: Path, tmp_path: Path) -> None:
    emu = emulator(key=CANARY_KEY)
    key_file = tmp_path / "key.txt"
    key_file.write_text(CANARY_KEY + "\n")
    out = tmp_path / "out"
    result = run_cli(*run_args(photos, out, emu.url, "--rate", "600", "--api-key-file", str(key_file)))
    assert result.returncode == 0, result.stderr
    assert CANARY_KEY not in result.stdout + result.stderr
    for path in out.rglob("*"):
        if path.is_file():
            assert CANARY_KEY.encode() not in path.read_bytes(), path


def test_output_inside_the_input_is_refused(photos: Path) -> None:
    result = run_cli("run", str(photos / "photos"), "--masks", str(photos / "masks"),
                     "--out", str(photos / "photos" / "cleaned"), "--engine", "local")
    assert result.returncode == 2
    assert "must not be the input folder or inside it" in result.stderr


def test_images_without_masks_are_listed_not_fatal(emulator, photos: Path, tmp_path: Path) -> None:
    (photos / "masks" / "b.png").unlink()
    emu = emulator()
    result = run_cli(*run_args(photos, tmp_path / "out", emu.url, "--rate", "600"), key="test-key")
    assert result.returncode == 0, result.stderr
    assert "1 without a mask" in result.stderr
    assert not (tmp_path / "out" / "b.png").exists()
    assert emu.charged() == 7
