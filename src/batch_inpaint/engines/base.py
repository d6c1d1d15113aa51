from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol


@dataclass(frozen=True, slots=True)
class InpaintRequest:
    """What an engine receives: bytes the API accepts, already checked by preflight."""

    image: bytes = field(repr=False)
    image_type: str
    mask_png: bytes = field(repr=False)
    size: tuple[int, int]
    mode: str = "fast"
    name: str = "image"


@dataclass(frozen=True, slots=True)
class InpaintResult:
    """A verified PNG of ``size`` and what it cost."""

    png: bytes = field(repr=False)
    credits_consumed: Decimal | None = None
    remaining_credits: Decimal | None = None


class Engine(Protocol):
    """One method does the work. Errors are those of ``batch_inpaint.errors`` only."""

    name: str
    #: True if a call may spend credits (the pipeline then paces and budgets it).
    paid: bool

    async def inpaint(self, request: InpaintRequest) -> InpaintResult: ...

    async def aclose(self) -> None: ...
