"""The output folder's job mark: made once, by the first worker; read by the others wherever they mount it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from batch_inpaint.errors import ConfigError
from batch_inpaint.jobfolder import mark_folder, mark_path, read_mark


def test_the_first_mark_stands(tmp_path: Path) -> None:
    assert read_mark(tmp_path) is None
    first = mark_folder(tmp_path, "/mnt/a/out")
    assert mark_folder(tmp_path, "/mnt/b/out") == first == read_mark(tmp_path)  # the folder, mounted elsewhere
    assert first.job == "/mnt/a/out" and len(first.token) == 32
    assert [p.name for p in mark_path(tmp_path).parent.iterdir()] == ["job"]  # no part file left behind


def test_workers_marking_at_once_agree(tmp_path: Path) -> None:
    marks = []
    start = threading.Barrier(8)

    def mark(i: int) -> None:
        start.wait()
        marks.append(mark_folder(tmp_path, f"/host{i}/out"))

    threads = [threading.Thread(target=mark, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(marks) == 8 and len(set(marks)) == 1 and marks[0] == read_mark(tmp_path)


def test_a_mark_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    mark_path(tmp_path).parent.mkdir(parents=True)
    mark_path(tmp_path).write_text("{half a mark")
    with pytest.raises(ConfigError, match=r"\.batch-inpaint/job: not a job mark"):
        mark_folder(tmp_path, "j")
