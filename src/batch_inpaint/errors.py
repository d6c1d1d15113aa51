"""The exception tree of batch-inpaint.

    BatchInpaintError
     ├── ConfigError            bad settings, missing key: exit 2 before any request
     ├── LockHeld               another run holds the output folder: exit 5
     ├── ManifestError          the manifest or output folder cannot be used: exit 6
     ├── OutputError            this item's output could not be written: item fails
     ├── ItemError              this item is bad; retrying will not help
     │    ├── InvalidInput      preflight refused the pair (never sent)
     │    └── Rejected          the API refused it (400, 406, 422)
     ├── Retryable              try again after a pause
     │    ├── RateLimited       429, maybe with Retry-After
     │    ├── ServerError       5xx
     │    ├── TransportError    read/write failure, timeout, reset: may have been charged
     │    │    └── Unreachable  the connection was never made (refused, DNS, TLS): cannot have been
     │    └── BrokenResponse    200 that is not a PNG of the right size
     └── RunStopped             stop the whole run at once
          ├── KeyRejected       401 / 403
          ├── CreditsExhausted  402, or the --max-credits budget is spent
          ├── DiskUnwritable    disk full or read-only: every further output would be paid for and lost
          ├── ApiUnreachable    no request has reached the API for a while (`breaker`): exit 7
          └── TlsUnverified     the API's certificate does not verify (see --ca-bundle): exit 2

Each error that ends a run carries its ``exit_code`` (`ExitCode`). Third-party errors (httpx, sqlite3)
become these in exactly one place each: `engines.clipdrop` and `store.sqlite`.
No message here ever contains the API key.
"""

from __future__ import annotations

from .exitcodes import ExitCode


class BatchInpaintError(Exception):
    """Base of every error the library raises on purpose."""


class ConfigError(BatchInpaintError):
    """Settings are wrong; nothing was sent."""

    exit_code = ExitCode.USAGE


class LockHeld(BatchInpaintError):
    """Another run is working on this output folder."""

    exit_code = ExitCode.LOCKED


class ManifestError(BatchInpaintError):
    """The manifest (or the output folder holding it) cannot be read or written."""

    exit_code = ExitCode.UNWRITABLE


class NoManifest(ManifestError):
    """A manifest only to be read is not there yet (no run has made it)."""


class OutputError(BatchInpaintError):
    """The result could not be written where it belongs. ``errno`` tells a full disk from a bad name."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class ItemError(BatchInpaintError):
    """This one item cannot be processed; the run goes on."""

    status: int | None = None


class InvalidInput(ItemError):
    """The pair failed preflight and was never sent."""


class Rejected(ItemError):
    """The API answered 400/406/422 for this item."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class Retryable(BatchInpaintError):
    """A failure that may pass on another attempt."""

    status: int | None = None
    #: The server may have done the work, and charged for it, though we never saw the answer.
    maybe_charged = False


class RateLimited(Retryable):
    def __init__(self, retry_after: float | None, message: str = "rate limited") -> None:
        super().__init__(f"HTTP 429: {message}")
        self.status = 429
        self.retry_after = retry_after


class ServerError(Retryable):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class TransportError(Retryable):
    """The request or its response was lost on the way; it may have been charged."""

    maybe_charged = True


class Unreachable(TransportError):
    """The connection was never made (refused, no such host, TLS handshake): nothing was sent, so
    nothing can have been charged."""

    maybe_charged = False


class BrokenResponse(Retryable):
    """A 200 whose body is not the PNG we asked for; it may have been charged."""

    maybe_charged = True


def maybe_charged(exc: BaseException) -> bool:
    return bool(getattr(exc, "maybe_charged", False))


def is_outage(exc: BaseException) -> bool:
    """A failure that says the API is not there, rather than anything about the item."""
    return isinstance(exc, TransportError) or (isinstance(exc, ServerError) and exc.status in (502, 503, 504))


class RunStopped(BatchInpaintError):
    """Nothing more can succeed in this run."""

    exit_code = ExitCode.FAILED
    status: int | None = None


class KeyRejected(RunStopped):
    exit_code = ExitCode.KEY_REJECTED

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"the API rejected the key (HTTP {status}): {message}")
        self.status = status


class CreditsExhausted(RunStopped):
    exit_code = ExitCode.OUT_OF_CREDITS

    def __init__(self, message: str, status: int | None = 402) -> None:
        super().__init__(message)
        self.status = status


class DiskUnwritable(RunStopped):
    exit_code = ExitCode.UNWRITABLE


class ApiUnreachable(RunStopped):
    """Every recent request failed on the way to the API: items stay pending for the next run."""

    exit_code = ExitCode.API_UNREACHABLE


class TlsUnverified(RunStopped):
    """Every request would fail the same way; verification is never turned off, so say how to fix it."""

    exit_code = ExitCode.USAGE


def first_error(group: BaseExceptionGroup[BaseException]) -> BatchInpaintError | None:
    """The first of our errors in a task group's exception group, however deeply nested: the one that
    decides the exit code."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            inner = first_error(exc)
            if inner is not None:
                return inner
        elif isinstance(exc, BatchInpaintError):
            return exc
    return None
