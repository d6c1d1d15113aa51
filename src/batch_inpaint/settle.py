"""Whether a file is whole: `watch` sends a pair only once its files have stopped changing.

A file counts as settled once its size and mtime have stayed the same for ``seconds``: by the clock
(its mtime is that old) or, where the file server's clock cannot be trusted, by what earlier walks
saw of it. A file still being copied changes at every write, so it is never sent half-written.
"""

from __future__ import annotations

import os
import time
from typing import Callable

from .pairing import FileSig, Pair


class Settle:
    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.seconds = seconds
        self._clock = clock
        self._wall = wall
        #: Files not settled yet: how they looked, since when (``clock``), and the pass that last saw them.
        self._seen: dict[str, tuple[FileSig, float, int]] = {}
        self._pass = 0

    def new_pass(self) -> None:
        """A walk begins: a file it does not look at again (deleted, or no longer due) is forgotten."""
        self._pass += 1

    def ready(self, pair: Pair) -> bool:
        """Both files of ``pair`` are settled (each is looked at, so both start their wait now)."""
        image = self._file(pair.image_file, pair.image_sig)
        mask = pair.mask_file is None or self._file(pair.mask_file, pair.mask_sig)
        return image and mask

    def next_check(self) -> float | None:
        """Seconds until the earliest file the last walk left waiting could count as settled; None if none."""
        self._seen = {path: seen for path, seen in self._seen.items() if seen[2] == self._pass}
        if not self._seen:
            return None
        earliest = min(since for _, since, _ in self._seen.values())
        return max(0.0, earliest + self.seconds - self._clock())

    def _file(self, path: str, sig: FileSig | None) -> bool:
        if self.seconds <= 0:
            return True
        if sig is None:
            try:
                st = os.stat(path)
            except OSError:
                return True  # gone or unreadable: preflight says so, as for any run
            sig = FileSig(st.st_size, st.st_mtime_ns)
        now = self._clock()
        if self._wall() - sig.mtime_ns / 1e9 >= self.seconds:
            self._seen.pop(path, None)
            return True
        before = self._seen.get(path)
        if before is None or before[0] != sig:
            self._seen[path] = (sig, now, self._pass)
            return False
        if now - before[1] >= self.seconds:
            del self._seen[path]
            return True
        self._seen[path] = (sig, before[1], self._pass)
        return False
