"""Output that a closed pipe cannot break: ``run ... 2>&1 | head -1`` must not stop the work, and
``export | head`` ends quietly, as Unix tools do."""

from __future__ import annotations

import io
import os
from typing import TextIO


def silence(stream: TextIO) -> None:
    """Point the stream's file descriptor at /dev/null, so what is still buffered (and the flush at
    exit, which would otherwise turn the exit code into 120) goes nowhere instead of failing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


class Forgiving(io.TextIOBase):
    """Writes through to ``stream`` until its reader goes away, then drops them: a run whose log
    reader closed keeps working, and its exit code still tells how it went."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                self._stream.write(text)
            except (BrokenPipeError, ConnectionResetError):
                self._lost()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except (BrokenPipeError, ConnectionResetError):
                self._lost()

    def isatty(self) -> bool:
        return not self.gone and self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._stream.encoding

    def _lost(self) -> None:
        self.gone = True
        silence(self._stream)
