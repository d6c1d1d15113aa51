from __future__ import annotations

from pathlib import Path

import pytest

from batch_inpaint.manifest import ItemRow
from batch_inpaint.pairing import FileSig, Pair
from batch_inpaint.resume import Decision, OutputIndex, decide

SIG, MSIG = FileSig(100, 5), FileSig(20, 6)


def row(status: str = "done", **changes: object) -> ItemRow:
    values: dict[str, object] = dict(key="a.jpg", status=status, image_size=100, image_mtime_ns=5, image_hash="h",
                                     mask_size=20, mask_mtime_ns=6, mask_hash="m", settings_hash="s",
                                     output_path="a.png", output_size=3)
    values.update(changes)
    return ItemRow(**values)  # type: ignore[arg-type]


@pytest.fixture
def outputs(tmp_path: Path) -> OutputIndex:
    (tmp_path / "a.png").write_bytes(b"png")
    return OutputIndex(tmp_path)


def test_decisions(outputs: OutputIndex) -> None:
    pair = Pair("a.jpg", "/in/a.jpg", "/m/a.png", "a", SIG, MSIG)
    d = lambda r, **kw: decide(pair, r, settings_hash="s", outputs=outputs, **kw)  # noqa: E731
    assert d(None) is Decision.DUE
    assert d(row()) is Decision.SKIP
    assert d(row(), force=True) is Decision.DUE
    assert d(row(image_mtime_ns=4)) is Decision.CHECK_HASH
    assert d(row(settings_hash="other")) is Decision.DUE
    assert d(row(output_path="gone.png")) is Decision.DUE
    assert d(row("in_flight")) is Decision.DUE and d(row("pending")) is Decision.DUE
    assert d(row("failed")) is Decision.SKIP
    assert d(row("failed"), retry_failed=True) is Decision.DUE
    assert d(row("failed", mask_size=21)) is Decision.DUE
    assert d(row("empty_mask")) is Decision.SKIP


def test_an_image_without_a_mask_stays_skipped_until_one_appears(outputs: OutputIndex) -> None:
    lonely = Pair("a.jpg", "/in/a.jpg", None, "a", SIG, None)
    no_mask_row = row("no_mask", mask_size=None, mask_mtime_ns=None)
    assert decide(lonely, no_mask_row, settings_hash="s", outputs=outputs) is Decision.SKIP
    found = Pair("a.jpg", "/in/a.jpg", "/m/a.png", "a", SIG, MSIG)
    assert decide(found, no_mask_row, settings_hash="s", outputs=outputs) is Decision.DUE


def test_output_index_lists_each_folder_once(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.png").write_bytes(b"1")
    index = OutputIndex(tmp_path)
    assert index.exists("d/x.png") and not index.exists("d/y.png") and not index.exists("nope/x.png")
