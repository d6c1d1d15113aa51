"""The emulated API as an ASGI app (Starlette). Everything the contract leaves open is a switch."""

from __future__ import annotations

import collections
import functools
import hashlib
import io
import math
import random
import threading
import time
from typing import Any, Callable

import anyio
from PIL import Image
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .. import imaging
from ..engines.local import inpaint_png
from .config import FAULTS, EmulatorConfig
from .limits import Window
from .requestlog import RequestLog

MAX_PIXELS = 16_000_000
MAX_BYTES = 30_000_000


class Reject(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


class EmulatorState:
    def __init__(self, config: EmulatorConfig, abort: Callable[[Scope], None]) -> None:
        self.config = config
        self.credits = dict(config.keys)
        self.key_ids = {key: f"key{i + 1}" for i, key in enumerate(config.keys)}
        self.windows = {key: Window(config.window, config.rate_per_minute * config.window_seconds / 60.0, config.window_seconds) for key in config.keys}
        self.random = random.Random(config.seed)
        self.log = RequestLog(config.log_path)
        self.abort = abort

    def pick_fault(self) -> str | None:
        draw = self.random.random()
        for kind in FAULTS:
            rate = self.config.faults.get(kind, 0.0)
            if draw < rate:
                return kind
            draw -= rate
        return None

    def latency(self) -> float:
        mean, spread = self.config.latency_mean, self.config.latency_spread
        if mean <= 0:
            return 0.0
        if spread <= 0:
            return mean
        mu = math.log(mean) - spread * spread / 2.0
        return self.random.lognormvariate(mu, spread)


async def _hang(request: Request, seconds: float) -> bool:
    """Hold the answer back; False as soon as the client gives up (so the log shows the hang at once)."""
    with anyio.move_on_after(seconds):
        while not await request.is_disconnected():
            await anyio.sleep(0.05)
        return False
    return True


def _error(status: int, message: str, **headers: str) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _accepts_png(accept: str | None) -> bool:
    if not accept:
        return True
    types = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    return any(t in ("image/png", "image/*", "*/*") for t in types)


def _check_image(data: bytes) -> Image.Image:
    if not data:
        raise Reject(400, "image_file is missing or empty")
    if len(data) > MAX_BYTES:
        raise Reject(400, "image_file is larger than 30 Mb")
    if not (data.startswith(b"\xff\xd8\xff") or data.startswith(b"\x89PNG\r\n\x1a\n")):
        raise Reject(400, "image_file must be a JPG or a PNG")
    try:
        im = Image.open(io.BytesIO(data))
    except Exception:
        raise Reject(400, "image_file could not be decoded") from None
    if im.size[0] * im.size[1] > MAX_PIXELS:
        raise Reject(400, "image resolution is larger than 16 megapixels")
    return im


def _check_mask(data: bytes, size: tuple[int, int], grey: str) -> None:
    if not data:
        raise Reject(400, "mask_file is missing or empty")
    if len(data) > MAX_BYTES:
        raise Reject(400, "mask_file is larger than 30 Mb")
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise Reject(400, "mask_file must be a PNG")
    try:
        mask = Image.open(io.BytesIO(data))
        mask.load()
    except Exception:
        raise Reject(400, "mask_file could not be decoded") from None
    if mask.size != size:
        raise Reject(400, f"mask resolution {mask.size[0]}x{mask.size[1]} differs from image {size[0]}x{size[1]}")
    if grey == "reject" and any(mask.convert("L").histogram()[1:255]):
        raise Reject(400, "mask_file must contain only black (0) and white (255) pixels")


@functools.lru_cache(maxsize=8)
def _stub_png(size: tuple[int, int]) -> bytes:
    return imaging.encode_png(Image.new("RGB", size, (90, 130, 60)), compress_level=6)


_ECHOED: "collections.OrderedDict[bytes, bytes]" = collections.OrderedDict()
ECHO_CACHE_BYTES = 1024 * 2**20
_ECHO_LOCK = threading.Lock()


def _echo_png(image: bytes) -> bytes:
    """The picture itself as the API would return it (zlib's default level: a real photograph's 12 MP
    PNG is about 16 MB). Answers are kept, up to 1 GB, so a benchmark sending the same pairs again
    measures its client, not this encoder."""
    key = hashlib.blake2b(image, digest_size=16).digest()
    with _ECHO_LOCK:
        png = _ECHOED.pop(key, None)
    if png is None:
        png = imaging.encode_png(Image.open(io.BytesIO(image)), compress_level=6)
    with _ECHO_LOCK:
        _ECHOED[key] = png
        while sum(map(len, _ECHOED.values())) > ECHO_CACHE_BYTES and len(_ECHOED) > 1:
            _ECHOED.popitem(last=False)
    return png


def _result_png(image: bytes, mask: bytes, config: EmulatorConfig) -> bytes:
    if config.work == "stub":
        return _stub_png(Image.open(io.BytesIO(image)).size)
    if config.exif == "apply":
        image = imaging.encode_png(imaging.upright(Image.open(io.BytesIO(image))))
    if config.work == "echo":
        return _echo_png(image)
    if config.grey_masks == "threshold":
        mask = imaging.encode_png(imaging.strict_mask(Image.open(io.BytesIO(mask)), 128))
    if config.work == "blob":
        return _blob_png(image, mask)
    result = inpaint_png(image, mask)
    if config.work == "shift":
        return _shifted_png(result)
    return result


def _blob_png(image: bytes, mask: bytes) -> bytes:
    """The mask filled with the picture's mean colour: a fill with no texture at all."""
    import numpy as np

    pixels = np.array(Image.open(io.BytesIO(image)).convert("RGB"))
    inside = np.asarray(Image.open(io.BytesIO(mask)).convert("L")) > 127
    pixels[inside] = pixels.reshape(-1, 3).mean(axis=0).astype(np.uint8)
    return imaging.encode_png(Image.fromarray(pixels))


def _shifted_png(result: bytes) -> bytes:
    """Every colour moved (warmer by 30 levels of red, 20 fewer of blue): wrong outside the mask too."""
    import numpy as np

    pixels = np.asarray(Image.open(io.BytesIO(result)).convert("RGB"), dtype=np.int16)
    return imaging.encode_png(Image.fromarray(np.clip(pixels + (30, 0, -20), 0, 255).astype(np.uint8)))


class PartialResponse(Response):
    """Announce the full body, send part of it, then drop the connection (a truncated download)."""

    def __init__(self, body: bytes, state: EmulatorState, headers: dict[str, str]) -> None:
        super().__init__(body, media_type="image/png", headers=headers)
        self._state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body[: len(self.body) // 2], "more_body": True})
        self._state.abort(scope)


def create_app(config: EmulatorConfig, abort: Callable[[Scope], None] | None = None) -> Starlette:
    state = EmulatorState(config, abort or (lambda scope: None))
    limiter = anyio.CapacityLimiter(4)

    async def cleanup(request: Request) -> Response:
        arrived = time.time()
        entry: dict[str, Any] = {"t": arrived, "status": None, "fault": None, "charged": False}
        try:
            response = await _handle(request, entry)
        except Reject as exc:
            response = _error(exc.status, exc.message)
            entry["error"] = exc.message
        entry["status"] = entry["status"] or response.status_code
        entry["done"] = time.time()
        state.log.write(entry)
        return response

    async def _handle(request: Request, entry: dict[str, Any]) -> Response:
        key = request.headers.get("x-api-key")
        if not key:
            raise Reject(401, "No api key provided")
        if key not in state.credits:
            raise Reject(403, "Invalid api key")
        entry["key"] = state.key_ids[key]
        if not state.windows[key].admit(time.time()):
            entry["limited"] = True
            headers = {"retry-after": str(max(1, math.ceil(60 / config.rate_per_minute)))} if config.retry_after else {}
            return _error(429, "Too many requests, blocked by the rate limiter", **headers)
        fault = state.pick_fault()
        entry["fault"] = fault
        if fault == "reset":
            state.abort(request.scope)
            return Response(status_code=500)
        if fault in ("500", "503"):
            return _error(int(fault), "Internal server error" if fault == "500" else "Service unavailable")
        if fault == "502":
            return Response("<html><body><h1>502 Bad Gateway</h1></body></html>", 502, media_type="text/html")
        if fault in ("429", "429bare"):
            headers = {"retry-after": "1"} if config.retry_after and fault == "429" else {}
            return _error(429, "Too many requests, blocked by the rate limiter", **headers)
        if not _accepts_png(request.headers.get("accept")):
            raise Reject(406, "Accept header must allow image/png")
        form = await request.form(max_part_size=MAX_BYTES + 1024)
        image_file, mask_file = form.get("image_file"), form.get("mask_file")
        image = await image_file.read() if isinstance(image_file, UploadFile) else b""
        mask = await mask_file.read() if isinstance(mask_file, UploadFile) else b""
        entry["bytes"] = len(image) + len(mask)
        entry["image"] = hashlib.blake2b(image, digest_size=8).hexdigest()  # which picture, for tests
        mode = form.get("mode", "fast")
        if mode not in ("fast", "quality"):
            raise Reject(400, "mode must be fast or quality")
        im = _check_image(image)
        _check_mask(mask, im.size, config.grey_masks)
        if state.credits[key] < 1:
            raise Reject(402, "Not enough credits")
        if fault == "hang" and not await _hang(request, config.hang_seconds):
            entry["client_gave_up"] = True
            return Response(status_code=499)
        await anyio.sleep(state.latency() * (2.0 if mode == "quality" else 1.0))
        png = await anyio.to_thread.run_sync(_result_png, image, mask, config, limiter=limiter)
        state.credits[key] -= 1
        entry["charged"] = True
        headers = {"x-remaining-credits": f"{state.credits[key]:g}", "x-credits-consumed": "1"}
        if fault == "truncate":
            return PartialResponse(png, state, headers)
        if fault == "corrupt":
            middle = len(png) // 2
            png = png[:middle] + bytes(b ^ 0x5A for b in png[middle:middle + 64]) + png[middle + 64:]
        return Response(png, media_type="image/png", headers=headers)

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "requests": len(state.log.entries)})

    async def sink(request: Request) -> Response:
        """Reads and drops a body: benchmarks measure what an upload alone costs the client."""
        async for _ in request.stream():
            pass
        return Response(status_code=204)

    app = Starlette(routes=[Route("/cleanup/v1", cleanup, methods=["POST"]), Route("/_health", health),
                            Route("/_sink", sink, methods=["POST"])])
    app.state.emulator = state
    return app
