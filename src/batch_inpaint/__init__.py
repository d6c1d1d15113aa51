"""batch-inpaint: remove unwanted objects from whole folders of photos.

The library is the product; ``batch-inpaint`` (the CLI) is a thin layer over `run_batch`.
"""

from .errors import (
    BatchInpaintError,
    BrokenResponse,
    ConfigError,
    CreditsExhausted,
    InvalidInput,
    ItemError,
    KeyRejected,
    OutputError,
    RateLimited,
    Rejected,
    Retryable,
    RunStopped,
    ServerError,
    TransportError,
)
from .pairing import Pair
from .settings import Settings, build_settings

__version__ = "0.1.0"

__all__ = [
    "BatchInpaintError", "BrokenResponse", "ConfigError", "CreditsExhausted", "InvalidInput", "ItemError",
    "KeyRejected", "OutputError", "Pair", "Prepared", "RateLimited", "Rejected", "Retryable", "RunStopped",
    "ServerError", "Settings", "TransportError", "__version__", "build_settings", "prepare", "run_batch",
]


_LAZY = {"run_batch": "runner", "Prepared": "preflight", "prepare": "preflight"}


def __getattr__(name: str) -> object:
    """Imaging and networking load on first use: `import batch_inpaint` stays light, so the CLI starts
    fast and the allocator settings it makes apply before Pillow is loaded."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)
