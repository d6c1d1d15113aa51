"""The emulator's settings: everything the API contract leaves open is a switch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

WORK = ("inpaint", "echo", "blob", "shift", "stub")
FAULTS = ("500", "502", "503", "429", "429bare", "reset", "hang", "truncate", "corrupt")


@dataclass
class EmulatorConfig:
    keys: dict[str, float] = field(default_factory=lambda: {"test-key": 1000.0})
    rate_per_minute: float = 60.0
    #: The window's length: tests shrink it (10 per 6 s is 100 per minute) to check windows quickly.
    window_seconds: float = 60.0
    window: str = "sliding"
    retry_after: bool = True
    faults: dict[str, float] = field(default_factory=dict)
    latency_mean: float = 0.0
    latency_spread: float = 0.0
    hang_seconds: float = 3600.0
    seed: int | None = None
    log_path: Path | None = None
    exif: str = "ignore"
    grey_masks: str = "reject"
    #: "inpaint" runs the local engine; "echo" returns the image itself as PNG (the masked region
    #: unchanged); "blob" fills the mask with one flat colour; "shift" inpaints, then shifts the colours of
    #: the whole picture; "stub" returns a cached flat PNG of the right size (nearly free: for benchmarks
    #: of the client alone). Echo, blob and shift are the bad answers the report's flags must catch.
    work: str = "inpaint"

    def __post_init__(self) -> None:
        unknown = set(self.faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {', '.join(sorted(unknown))}; known: {', '.join(FAULTS)}")
        if self.work not in WORK:
            raise ValueError(f"unknown work {self.work!r}; known: {', '.join(WORK)}")
        if sum(self.faults.values()) > 1.0:
            raise ValueError("fault rates add up to more than 1")
