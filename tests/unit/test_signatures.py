"""The stats of a re-run, taken here or by a helper process: the same answers either way, and a helper
that dies, or whose run dies, costs nothing but the time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batch_inpaint.signatures import Helper, HelperGone, take


def touch(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def requests(tmp_path: Path) -> list[tuple[str, list[str], str, list[str | None], str | None, bool]]:
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    for i in range(5):
        touch(photos / f"p{i}.jpg", b"x" * (i + 1))
        touch(masks / f"p{i}.png", b"m" * (i + 10))
    os.utime(masks / "p1.png", ns=(1, 7_000_000_123))
    logo = str(touch(tmp_path / "logo.png", b"logo"))
    names = [f"p{i}.jpg" for i in range(5)] + ["gone.jpg"]
    mask_names: list[str | None] = [f"p{i}.png" for i in range(5)] + [None]
    mask_names[3], mask_names[4] = None, "gone.png"
    return [
        (str(photos), names, str(masks), mask_names, None, False),
        (str(photos), names[:2], str(masks), [None, None], logo, False),
        (str(photos), names[:2], str(masks), [None, None], str(tmp_path / "no-logo.png"), False),
        (str(tmp_path / "no-folder"), names[:1], str(masks), mask_names[:1], None, False),
    ]


def test_take_gives_each_files_signature_or_the_reason(tmp_path: Path) -> None:
    [mixed, fixed, fixed_gone, no_folder] = [take(*r) for r in requests(tmp_path)]
    p0, p1 = tmp_path / "photos" / "p0.jpg", tmp_path / "photos" / "p1.jpg"
    assert mixed[0] == (1, p0.stat().st_mtime_ns, 10, (tmp_path / "masks" / "p0.png").stat().st_mtime_ns)
    assert mixed[1][2:] == (11, 7_000_000_123)
    assert mixed[3][2:] == (None, None)  # no mask
    assert mixed[4] == mixed[5] == "No such file or directory"  # the mask gone; the picture gone
    assert fixed == [(1, p0.stat().st_mtime_ns, 4, (tmp_path / "logo.png").stat().st_mtime_ns),
                     (2, p1.stat().st_mtime_ns, 4, (tmp_path / "logo.png").stat().st_mtime_ns)]
    assert fixed_gone == ["No such file or directory"] * 2 and no_folder == ["No such file or directory"]


def test_the_helper_answers_as_take_does_in_the_order_asked(tmp_path: Path) -> None:
    asked = requests(tmp_path) * 3
    helper = Helper()
    try:
        futures = [helper.submit(r) for r in asked]  # all sent before any answer is read
        assert [f.result(timeout=30) for f in futures] == [(take(*r), None) for r in asked]
    finally:
        helper.close()
    assert helper._proc.returncode == 0  # it exits when its input closes


def test_the_helper_reads_each_slices_brief_rows_as_the_store_does(tmp_path: Path) -> None:
    """From the manifest a run has open (WAL), read only, the same rows the store gives, and none of
    another folder's."""
    import anyio

    from batch_inpaint.store import SeenItem, SqliteStore

    request = requests(tmp_path)[0]
    store = SqliteStore(tmp_path / "manifest.sqlite3")
    keys = ["a/p0.jpg", "a/p1.jpg", "a/p2.jpg", "a/x.jpg", "b/p0.jpg"]
    anyio.run(store.record_seen, [SeenItem(k, f"/in/{k}", None, None, None, "pending") for k in keys])
    helper = Helper()
    try:
        taken, rows = helper.submit(request, store.brief_source(), "a/").result(timeout=30)
        assert taken == take(*request)
        assert rows == anyio.run(store.briefs, [f"a/{name}" for name in request[1]])
        assert set(rows) == {"a/p0.jpg", "a/p1.jpg", "a/p2.jpg"}
    finally:
        helper.close()
        anyio.run(store.aclose)


def test_a_helper_killed_fails_what_it_had_and_all_that_follows_at_once(tmp_path: Path) -> None:
    request = requests(tmp_path)[0]
    helper = Helper()
    try:
        assert helper.submit(request).result(timeout=30) == (take(*request), None)
        os.kill(helper.pid, signal.SIGSTOP)  # so that it holds these when it dies
        held = [helper.submit(request) for _ in range(3)]
        os.kill(helper.pid, signal.SIGKILL)
        helper._proc.wait(timeout=10)
        later = [helper.submit(request) for _ in range(3)]
        for future in held + later:
            with pytest.raises(HelperGone):
                future.result(timeout=10)
    finally:
        helper.close()


def test_the_helper_leaves_when_its_run_is_killed_and_ctrl_c_reaches_only_the_run(tmp_path: Path) -> None:
    script = ("import sys, time\nfrom batch_inpaint.signatures import Helper\nh = Helper()\n"
              "print(h.pid, flush=True)\ntime.sleep(60)\n")
    run = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(run.stdout.readline())  # type: ignore[union-attr]
        assert os.getsid(pid) != os.getsid(run.pid)  # a session of its own: the terminal's SIGINT is the run's
        run.kill()
        run.wait()
        deadline = time.monotonic() + 15
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid)
    finally:
        run.kill()
        run.wait()
        run.stdout.close()  # type: ignore[union-attr]


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie left for an init that does not reap."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
