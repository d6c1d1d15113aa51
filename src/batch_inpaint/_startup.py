"""What a process of batch-inpaint does first, before any third-party import."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


def defer_httpx_cli() -> None:
    """httpx imports its own command line (click, pygments, rich.syntax) as it is imported, whenever
    click is installed, and uvicorn, the emulator's server, brings click: 150 ms of CPU in every
    process, for a command line batch-inpaint never calls. A stand-in holds its place and loads the
    real one the first time anyone calls it. Nothing changes if httpx was imported already."""
    if "httpx" in sys.modules or "httpx._main" in sys.modules:
        return
    stand_in = types.ModuleType("httpx._main")

    def main(*args: Any, **kwargs: Any) -> Any:
        if sys.modules.get("httpx._main") is stand_in:
            del sys.modules["httpx._main"]
        return importlib.import_module("httpx._main").main(*args, **kwargs)

    stand_in.main = main  # type: ignore[attr-defined]
    sys.modules["httpx._main"] = stand_in
