"""A test double for the Engine interface: scripted outcomes, recorded calls, no network."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping

from PIL import Image

from .. import imaging
from ..pieces import Pieces
from .base import InpaintRequest, InpaintResult

Outcome = BaseException | None


class FakeEngine:
    """Returns a grey PNG of the right size, or raises the next scripted exception.

    ``script`` is consumed one entry per call (None means succeed); after it runs out every call succeeds.
    A ``paid`` fake costs a credit per success, like the API; an unpaid one costs nothing, like the local engine.
    """

    name = "fake"
    endpoint = "fake"

    def __init__(self, script: Iterable[Outcome] = (), *, paid: bool = True,
                 on_call: Callable[[InpaintRequest], None] | None = None) -> None:
        self._script = list(script)
        self.paid = paid
        self.credits_per_request = Decimal(1 if paid else 0)
        self.shaping: Mapping[str, Any] = {"engine": "fake", "mode": None, "local": None}
        self.calls: list[InpaintRequest] = []
        self.credits = Decimal(1000)
        self._on_call = on_call

    async def inpaint(self, request: InpaintRequest) -> InpaintResult:
        self.calls.append(request)
        if self._on_call is not None:
            self._on_call(request)
        if self._script:
            outcome = self._script.pop(0)
            if outcome is not None:
                raise outcome
        self.credits -= self.credits_per_request
        w, h = request.size
        png = imaging.encode_png(Image.new("RGB", (w, h), (128, 128, 128)))
        return InpaintResult(Pieces.of(png), self.credits_per_request, self.credits)

    async def aclose(self) -> None:
        return None
