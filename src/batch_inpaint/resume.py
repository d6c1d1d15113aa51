"""What a re-run does with an item the manifest already knows: the decision is pure, so it is easy to test."""

from __future__ import annotations

import enum
import os
from pathlib import Path

from .manifest import ItemRow
from .pairing import FileSig, Pair


class Decision(enum.Enum):
    DUE = "due"
    SKIP = "skip"
    #: Size or mtime moved but the content may be the same: compare hashes before deciding.
    CHECK_HASH = "check_hash"


def _same(sig: FileSig | None, size: int | None, mtime_ns: int | None) -> bool:
    if sig is None:
        return size is None
    return sig.size == size and sig.mtime_ns == mtime_ns


class OutputIndex:
    """Which outputs exist, one directory listing at a time: items arrive grouped by folder, so a
    re-run over a million done items lists each output folder once instead of a stat per item.
    Outputs are only ever renamed into place whole, so existence is the check that matters."""

    def __init__(self, out_dir: Path) -> None:
        self.root = str(out_dir)
        self._dir: str | None = None
        self._names: set[str] = set()

    def exists(self, rel: str) -> bool:
        folder, _, name = rel.rpartition("/")
        if folder != self._dir:
            self._dir = folder
            try:
                self._names = set(os.listdir(f"{self.root}/{folder}" if folder else self.root))
            except OSError:
                self._names = set()
        return name in self._names


def decide(
    pair: Pair,
    row: ItemRow | None,
    *,
    settings_hash: str,
    outputs: OutputIndex,
    retry_failed: bool = False,
    force: bool = False,
) -> Decision:
    if force or row is None or row.status in ("pending", "in_flight"):
        return Decision.DUE
    same_inputs = _same(pair.image_sig, row.image_size, row.image_mtime_ns) and _same(
        pair.mask_sig, row.mask_size, row.mask_mtime_ns
    )
    if row.status == "no_mask":
        return Decision.SKIP if pair.mask is None and same_inputs else Decision.DUE
    if row.settings_hash != settings_hash:
        return Decision.DUE
    if row.status in ("failed", "invalid"):
        return Decision.SKIP if same_inputs and not retry_failed else Decision.DUE
    if row.status == "done" and (not row.output_path or not outputs.exists(row.output_path)):
        return Decision.DUE
    if row.status in ("done", "empty_mask"):
        return Decision.SKIP if same_inputs else Decision.CHECK_HASH
    return Decision.DUE
