"""batch-inpaint: remove unwanted objects from whole folders of photos.

The library is the product; ``batch-inpaint`` (the CLI) is a thin layer over `run_batch`::

    settings = build_settings({"input_dir": "photos", "masks_dir": "masks", "out_dir": "cleaned"})
    result = anyio.run(run_batch, settings)   # RunResult: exit_code, stats, manifest, report

The seams, each a Protocol with implementations beside it: `Engine` (Clipdrop, local, a fake),
`Store` (SQLite, memory) and `Limiter` (this process, none).
"""

from typing import TYPE_CHECKING

from ._startup import defer_httpx_cli

defer_httpx_cli()

from .errors import (
    BatchInpaintError,
    BrokenResponse,
    ConfigError,
    CreditsExhausted,
    InvalidInput,
    ItemError,
    KeyRejected,
    LockHeld,
    ManifestError,
    OutputError,
    RateLimited,
    Rejected,
    Retryable,
    RunStopped,
    ServerError,
    TransportError,
)
from .exitcodes import ExitCode
from .pairing import Pair
from .settings import Settings, build_settings

if TYPE_CHECKING:  # the same names, loaded on first use at run time (see __getattr__)
    from .control import RunControl
    from .engines import Engine, FakeEngine, InpaintRequest, InpaintResult
    from .htmlreport import ReportWritten, write_report
    from .limiter import Limiter, ProcessLimiter, Unlimited
    from .preflight import Prepared, prepare
    from .runner import RunResult, run_batch
    from .watching import Watch, watch_batch
    from .stats import RunStats
    from .store import MemoryStore, SqliteStore, Store

__version__ = "0.1.0"

__all__ = [
    "BatchInpaintError", "BrokenResponse", "ConfigError", "CreditsExhausted", "Engine", "ExitCode", "FakeEngine",
    "InpaintRequest", "InpaintResult", "InvalidInput", "ItemError", "KeyRejected", "Limiter", "LockHeld",
    "ManifestError", "MemoryStore", "OutputError", "Pair", "Prepared", "ProcessLimiter", "RateLimited", "Rejected",
    "ReportWritten", "Retryable", "RunControl", "RunResult", "RunStats", "RunStopped", "ServerError", "Settings",
    "SqliteStore", "Store", "TransportError", "Unlimited", "__version__", "build_settings", "prepare", "run_batch",
    "Watch", "watch_batch", "write_report",
]

_LAZY = {
    "RunControl": "control", "Engine": "engines", "FakeEngine": "engines", "InpaintRequest": "engines",
    "InpaintResult": "engines", "Limiter": "limiter", "ProcessLimiter": "limiter", "Unlimited": "limiter",
    "Prepared": "preflight", "prepare": "preflight", "RunResult": "runner", "run_batch": "runner",
    "RunStats": "stats", "MemoryStore": "store", "SqliteStore": "store", "Store": "store",
    "ReportWritten": "htmlreport", "write_report": "htmlreport", "Watch": "watching", "watch_batch": "watching",
}


def __getattr__(name: str) -> object:
    """Imaging and networking load on first use: `import batch_inpaint` stays light, so the CLI starts
    fast and the allocator settings it makes apply before Pillow is loaded."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)
