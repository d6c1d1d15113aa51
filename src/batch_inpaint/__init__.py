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
from .preflight import Prepared, prepare
from .settings import Settings, build_settings

__version__ = "0.1.0"

__all__ = [
    "BatchInpaintError", "BrokenResponse", "ConfigError", "CreditsExhausted", "InvalidInput", "ItemError",
    "KeyRejected", "OutputError", "Pair", "Prepared", "RateLimited", "Rejected", "Retryable", "RunStopped",
    "ServerError", "Settings", "TransportError", "__version__", "build_settings", "prepare", "run_batch",
]


def __getattr__(name: str) -> object:
    if name == "run_batch":  # keeps `import batch_inpaint` light for the CLI's --help
        from .runner import run_batch

        return run_batch
    raise AttributeError(name)
