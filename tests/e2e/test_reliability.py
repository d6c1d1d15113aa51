"""The reliability and security suite: the promises, proved with numbers (printed at the end of the run).

Marked slow where it takes more than a few seconds; CI runs all of it.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from batch_inpaint.synthetic import write_tree

from ..conftest import CANARY_KEY, run_cli, start_cli, wait_for
from .helpers import FAST_RETRIES, check_output, pairs_of, write_config

STORM = ["--fault", "500=0.05", "--fault", "502=0.05", "--fault", "503=0.04", "--fault", "429=0.04",
         "--fault", "429bare=0.04", "--fault", "reset=0.04", "--fault", "hang=0.02", "--fault", "truncate=0.04",
         "--fault", "corrupt=0.04"]


def args(data: Path, out: Path, url: str, *extra: str) -> list[str]:
    return ["run", str(data / "photos"), "--masks", str(data / "masks"), "--out", str(out), "--api-url", url,
            "--progress", "lines", *extra]


def rows(out: Path, manifest: Path | None = None) -> list[sqlite3.Row]:
    db = sqlite3.connect(manifest or out / ".batch-inpaint" / "manifest.sqlite3")
    db.row_factory = sqlite3.Row
    try:
        return list(db.execute("SELECT * FROM items ORDER BY key"))
    finally:
        db.close()


def assert_consistent(out: Path, manifest: Path | None = None) -> None:
    """Nothing is marked done that is not whole on disk; no half-written file is left behind."""
    for row in rows(out, manifest):
        if row["status"] == "done":
            path = out / row["output_path"]
            assert path.stat().st_size == row["output_size"], row["key"]
            with Image.open(path) as im:
                im.load()
    assert list(out.rglob("*.part")) == []


@pytest.mark.slow
def test_fault_storm(emulator, tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    names = [f"s{i:03d}" for i in range(200)]
    write_tree(tmp_path / "data", names, size=(64, 48), seed=20)
    emu = emulator("--rate", "3000", "--seed", "42", "--hang-seconds", "30", *STORM)
    out = tmp_path / "out"
    config = write_config(tmp_path / "c.toml", **FAST_RETRIES, max_attempts=15)
    result = run_cli(*args(tmp_path / "data", out, emu.url, "--rate", "3000", "--config", str(config)), key="test-key")
    assert result.returncode == 0, result.stderr[-3000:]
    for photo, mask, rel in pairs_of(tmp_path / "data"):
        check_output(photo, mask, out / rel)
    entries = emu.entries()
    failing = [e for e in entries if e["fault"] or e["status"] != 200]
    assert len(failing) / len(entries) >= 0.30
    kinds = {e["fault"] for e in failing}
    assert kinds >= {"500", "502", "503", "429", "429bare", "reset", "hang", "truncate", "corrupt"}
    sends = [r["sends"] for r in rows(out)]
    assert max(sends) <= 15
    charged_broken = sum(1 for e in entries if e["charged"] and e["fault"] in ("truncate", "corrupt"))
    assert emu.charged() == 200 + charged_broken
    assert_consistent(out)
    figures("fault storm", "pairs", 200)
    figures("fault storm", "requests", len(entries))
    figures("fault storm", "failing requests", f"{len(failing)} ({len(failing) / len(entries):.0%})")
    figures("fault storm", "extra requests", len(entries) - 200)
    figures("fault storm", "most attempts on one item", max(sends))
    figures("fault storm", "charged for broken answers (paid, resent)", charged_broken)


@pytest.mark.slow
def test_crash_loop(emulator, tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    names = [f"c{i:03d}" for i in range(240)]
    write_tree(tmp_path / "data", names, size=(64, 48), seed=30)
    emu = emulator("--rate", "600", "--latency-mean", "0.1", "--latency-spread", "0.5")
    out = tmp_path / "out"
    rng = random.Random(99)
    kills = in_flight_at_kills = 0
    # At 300 a minute a life of at most 1.8 s sends at most 9 of the 240: the job outlives 25 kills on any machine.
    while kills < 40:
        proc = start_cli(*args(tmp_path / "data", out, emu.url, "--rate", "300"), key="test-key")
        try:
            proc.wait(timeout=rng.uniform(0.7, 1.8))
            _, stderr = proc.communicate()
            assert proc.returncode == 0, stderr
            break
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            kills += 1
            in_flight_at_kills += sum(1 for r in rows(out) if r["status"] == "in_flight") if (out / ".batch-inpaint" / "manifest.sqlite3").exists() else 0
    else:
        assert run_cli(*args(tmp_path / "data", out, emu.url, "--rate", "300"), key="test-key").returncode == 0
    assert kills >= 25
    db = sqlite3.connect(out / ".batch-inpaint" / "manifest.sqlite3")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    for photo, mask, rel in pairs_of(tmp_path / "data"):
        check_output(photo, mask, out / rel)
    assert_consistent(out)
    charged = emu.charged()
    assert charged <= len(names) + in_flight_at_kills
    figures("crash loop", "kill -9", kills)
    figures("crash loop", "items", len(names))
    figures("crash loop", "charged", f"{charged} (bound: {len(names)} + {in_flight_at_kills} in flight at kills)")


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    mount = tmp_path / "disk"
    if not _mount_tmpfs(mount, "700k"):
        pytest.skip("cannot mount a tmpfs here (needs root); the simulated disk-full test still runs")
    yield mount
    _umount(mount)


def test_disk_full_stops_the_run_and_keeps_the_manifest_true(emulator, photos: Path, tmp_path: Path,
                                                             small_disk: Path, figures) -> None:  # type: ignore[no-untyped-def]
    big = tmp_path / "big"
    write_tree(big, [f"b{i}" for i in range(12)], size=(400, 300), seed=5)
    emu = emulator()
    out = small_disk / "out"
    manifest = tmp_path / "manifest.sqlite3"  # beside, on a disk with room: the outputs fill theirs
    result = run_cli(*args(big, out, emu.url, "--rate", "1200", "--manifest", str(manifest), "--concurrency", "1"),
                     key="test-key")
    assert result.returncode == 6, result.stderr
    assert "No space left on device" in result.stderr
    statuses = [r["status"] for r in rows(out, manifest)]
    assert statuses.count("failed") == 1 and 0 < statuses.count("done") < 12
    assert_consistent(out, manifest)
    failed = next(r for r in rows(out, manifest) if r["status"] == "failed")
    assert "No space left on device" in failed["error"]
    db = sqlite3.connect(manifest)
    recorded = db.execute("SELECT exit_code FROM runs ORDER BY id DESC LIMIT 1").fetchone()[0]
    db.close()
    assert recorded == 6  # the code the process exited with
    figures("disk full", "outputs written before the disk filled", statuses.count("done"))
    figures("disk full", "requests after the first failed write", len(emu.entries()) - statuses.count("done") - 1)


def test_disk_full_with_the_manifest_on_it(emulator, tmp_path: Path, small_disk: Path) -> None:
    big = tmp_path / "big"
    write_tree(big, [f"b{i}" for i in range(12)], size=(400, 300), seed=5)
    emu = emulator()
    out = small_disk / "out"
    result = run_cli(*args(big, out, emu.url, "--rate", "1200", "--concurrency", "1"), key="test-key")
    assert result.returncode == 6, result.stderr
    assert "No space left on device" in result.stderr or "full" in result.stderr
    assert "Traceback" not in result.stderr
    assert_consistent(out)


def test_read_only_output_folder(emulator, photos: Path, tmp_path: Path) -> None:
    disk = tmp_path / "ro"
    if not _mount_tmpfs(disk, "1m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        emu = emulator()
        result = run_cli(*args(photos, disk / "out", emu.url), key="test-key")
        assert result.returncode == 6
        assert "Read-only file system" in result.stderr and "Traceback" not in result.stderr
        assert emu.entries() == []
    finally:
        _umount(disk)


def test_secrets_never_leave_the_process(emulator, photos: Path, tmp_path: Path) -> None:
    canary = CANARY_KEY
    out = tmp_path / "out"
    texts: list[str] = []
    ok = emulator(key=canary)
    storm = emulator("--seed", "3", "--hang-seconds", "30", *STORM, key=canary)
    stranger = emulator(key="someone-else")
    config = write_config(tmp_path / "c.toml", **FAST_RETRIES, max_attempts=15)
    for emu in (ok, storm):
        shutil.rmtree(out, ignore_errors=True)
        r = run_cli(*args(photos, out, emu.url, "--rate", "1200", "--config", str(config)), key=canary)
        assert r.returncode == 0, r.stderr
        texts += [r.stdout, r.stderr]
    r = run_cli(*args(photos, tmp_path / "out-auth", stranger.url), key=canary)
    assert r.returncode == 3
    texts += [r.stdout, r.stderr]
    slow = emulator("--latency-mean", "5", key=canary)
    proc = start_cli(*args(photos, tmp_path / "out-crash", slow.url, "--rate", "600"), key=canary)
    assert wait_for(lambda: len(slow.entries()) > 0 or (tmp_path / "out-crash" / ".batch-inpaint").exists())
    proc.kill()
    texts += list(proc.communicate())
    for folder in (out, tmp_path / "out-auth", tmp_path / "out-crash"):
        for command in (["status", str(folder)], ["export", str(folder), "--format", "jsonl"]):
            r = run_cli(*command)
            texts += [r.stdout, r.stderr]
    for text in texts:
        assert canary not in text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert canary.encode() not in path.read_bytes(), f"the key is in {path}"


def test_nothing_is_written_outside_the_output_folder(emulator, tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_tree(data, ["a", "odd name ü #1", "-dash", "new\nline"], size=(64, 48), seed=8)
    outside = tmp_path / "elsewhere"
    write_tree(outside, ["secret"], size=(64, 48), seed=9)
    os.symlink(outside / "photos" / "secret.jpg", data / "photos" / "link.jpg")
    os.symlink(outside / "masks" / "secret.png", data / "masks" / "link.png")
    os.symlink(outside / "photos", data / "photos" / "linkdir")
    os.symlink(outside / "masks", data / "masks" / "linkdir")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        "image,mask,output\n"
        "data/photos/a.jpg,data/masks/a.png,../../escaped\n"
        "data/photos/a.jpg,data/masks/a.png,/tmp/absolute\n"
        f"{outside}/photos/secret.jpg,{outside}/masks/secret.png,\n"
        "data/photos/odd name ü #1.jpg,data/masks/odd name ü #1.png,sub/../../up\n"
    )
    emu = emulator()

    def snapshot() -> set[Path]:
        return {p for p in tmp_path.rglob("*") if "out" not in p.relative_to(tmp_path).parts[0]}

    before = snapshot()
    walked = run_cli(*args(data, tmp_path / "out1", emu.url, "--rate", "1200", "--follow-symlinks"), key="test-key")
    assert walked.returncode == 0, walked.stderr
    assert (tmp_path / "out1" / "linkdir" / "secret.png").exists()
    assert (tmp_path / "out1" / "odd name ü #1.png").exists() and (tmp_path / "out1" / "new\nline.png").exists()
    listed = run_cli("run", "--pairs", str(pairs), "--out", str(tmp_path / "out2"), "--api-url", emu.url,
                     "--rate", "1200", key="test-key")
    assert listed.returncode == 1  # the three escaping lines are invalid
    assert listed.stderr.count("would leave the output folder") == 3
    assert (tmp_path / "out2" / "secret.png").exists()
    inside = run_cli(*args(data, data / "photos" / "out", emu.url), key="test-key")
    assert inside.returncode == 2
    after = {p for p in snapshot() if not p.name.startswith("emulator-")}
    assert after - before == set()


def test_overlapping_runs_only_one_works(emulator, photos: Path, tmp_path: Path) -> None:
    emu = emulator("--latency-mean", "0.2")
    out = tmp_path / "out"
    for count in (2, 5):
        shutil.rmtree(out, ignore_errors=True)
        before = emu.charged()
        procs = [start_cli(*args(photos, out, emu.url, "--rate", "600"), key="test-key") for _ in range(count)]
        codes = []
        for proc in procs:
            _, stderr = proc.communicate(timeout=120)
            codes.append(proc.returncode)
        assert sorted(codes) == [0] + [5] * (count - 1), codes
        assert emu.charged() - before == 8  # no item sent twice


def test_tls_is_verified_and_a_ca_bundle_can_be_given(emulator, photos: Path, tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    emu = emulator("--tls-cert", str(tmp_path / "server.pem"), "--tls-key", str(tmp_path / "server.pem"))
    assert emu.url.startswith("https://127.0.0.1:")
    refused = run_cli(*args(photos, tmp_path / "out1", emu.url), key="test-key")
    assert refused.returncode == 2
    assert "could not be verified" in refused.stderr and "--ca-bundle" in refused.stderr
    trusted = run_cli(*args(photos, tmp_path / "out2", emu.url, "--rate", "1200", "--ca-bundle", str(tmp_path / "ca.pem")),
                      key="test-key")
    assert trusted.returncode == 0, trusted.stderr
    help_text = run_cli("run", "--help").stdout.lower()
    assert "insecure" not in help_text and "no-verify" not in help_text


def test_the_emulator_listens_on_loopback_by_default() -> None:
    from batch_inpaint.cli import build_parser

    args = build_parser().parse_args(["emulator"])
    assert args.host == "127.0.0.1"


@pytest.mark.parametrize("share, retry_after", [(0.5, True), (0.8, False)], ids=["half-retry-after", "0.8-none"])
def test_a_server_limit_below_the_rate_is_learned(emulator, tmp_path: Path, share: float, retry_after: bool,
                                                  figures) -> None:
    """--rate 600 against a sliding window that counts rejects: a storm of 429s before, a handful now.
    The emulator's window is 12 s instead of 60 (the client is told with --rate-window): the same
    dynamics, a fifth of the wait; the room it keeps for late requests costs 3.3% of the rate."""
    from batch_inpaint.synthetic import write_tree

    limit = 600 * share
    count = int(limit * 12 / 60 * 10)  # ten windows' worth: a pause of one window costs a tenth, as it did at 6 s
    write_tree(tmp_path / "data", [f"img{i:03d}" for i in range(count)], size=(64, 48), seed=5)
    emu = emulator("--rate", f"{limit:g}", "--window-seconds", "12", "--work", "stub",
                   *([] if retry_after else ["--no-retry-after"]))
    result = run_cli("run", str(tmp_path / "data" / "photos"), "--masks", str(tmp_path / "data" / "masks"),
                     "--out", str(tmp_path / "out"), "--api-url", emu.url, "--rate", "600", "--rate-window", "12",
                     "--progress", "lines", key="test-key")
    assert result.returncode == 0, result.stderr
    entries = emu.entries()
    ok = sorted(e["t"] for e in entries if e["status"] == 200)
    rejected = sum(1 for e in entries if e["status"] == 429)
    assert len(ok) == count
    achieved = (len(ok) - 1) / (ok[-1] - ok[0]) * 60
    figures(f"limit {share}x --rate, Retry-After {retry_after}", "achieved / limit, 429s / requests",
            f"{achieved / limit:.3f}, {rejected}/{len(entries)}")
    assert achieved >= 0.9 * limit
    assert rejected < 0.05 * len(entries)
    assert "the server's limit looks lower than --rate 600: pacing at" in result.stderr
