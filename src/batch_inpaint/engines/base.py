"""The engine seam: one method does the work; the engine says what shapes its output and what a call costs."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping, Protocol

from ..pieces import Pieces


@dataclass(frozen=True, slots=True)
class InpaintRequest:
    """What an engine receives: bytes the API accepts, already checked by preflight."""

    image: bytes = field(repr=False)
    image_type: str
    mask_png: bytes = field(repr=False)
    size: tuple[int, int]
    name: str = "image"


@dataclass(frozen=True, slots=True)
class InpaintResult:
    """A verified PNG of ``size``, in the pieces it arrived in, and what it cost."""

    png: Pieces = field(repr=False)
    credits_consumed: Decimal = Decimal(0)
    remaining_credits: Decimal | None = None
    #: The result already small, for its look (`review.Preview`), from an engine that holds its pixels
    #: anyway: the look then needs no decode of the PNG. None: the look decodes it.
    preview: Any = field(default=None, repr=False)


class Engine(Protocol):
    """Errors are those of ``batch_inpaint.errors`` only.

    ``shaping`` is the engine's part of the settings hash: results recorded under one identity are
    never taken for another's. ``endpoint`` says where requests go (the API's URL): with ``shaping``
    and the bytes sent, it makes a request's identity (`request_hash`), so an answer paid for is
    reused for the same request and never for another. ``credits_per_request`` is the most one call
    may cost; the credit budget reserves it before each call (0 for an engine that costs nothing).
    """

    name: str

    @property
    def shaping(self) -> Mapping[str, Any]: ...

    @property
    def endpoint(self) -> str: ...

    @property
    def credits_per_request(self) -> Decimal: ...

    async def inpaint(self, request: InpaintRequest) -> InpaintResult: ...

    async def aclose(self) -> None: ...


def clipdrop_shaping(mode: str) -> dict[str, Any]:
    return {"engine": "clipdrop", "mode": mode, "local": None}


def local_shaping(method: str, radius: int) -> dict[str, Any]:
    return {"engine": "local", "mode": None, "local": [method, radius]}


def request_hash(payload_hash: str, shaping: Mapping[str, Any], endpoint: str) -> str:
    """A request's identity: what is sent, how, and where. Equal hashes get equal answers."""
    import hashlib
    import json

    text = json.dumps([payload_hash, dict(shaping), endpoint], sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
