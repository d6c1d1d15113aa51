"""The one place where httpx and HTTP statuses become batch-inpaint errors: every case is mapped."""

from __future__ import annotations

from decimal import Decimal
from typing import Callable

import httpx
import numpy as np
import pytest
from PIL import Image

from batch_inpaint import imaging, png
from batch_inpaint.engines.base import InpaintRequest
from batch_inpaint.engines.clipdrop import ClipdropEngine
from batch_inpaint.errors import (
    BrokenResponse,
    CreditsExhausted,
    KeyRejected,
    RateLimited,
    Rejected,
    ServerError,
    TransportError,
    Unreachable,
    maybe_charged,
)

KEY = "sk-secret-key-123"
URL = "https://api.example.test/cleanup/v1"


def picture(w: int = 8, h: int = 6) -> bytes:
    return imaging.encode_png(Image.fromarray(np.zeros((h, w, 3), np.uint8)))


REQUEST = InpaintRequest(picture(), "image/png", picture(), (8, 6))


def engine_for(handler: Callable[[httpx.Request], httpx.Response]) -> ClipdropEngine:
    return ClipdropEngine(KEY, url=URL, transport=httpx.MockTransport(handler))


async def call(handler: Callable[[httpx.Request], httpx.Response]):  # type: ignore[no-untyped-def]
    engine = engine_for(handler)
    try:
        return await engine.inpaint(REQUEST)
    finally:
        await engine.aclose()


def error(status: int, message: str = "boom", **headers: str) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, json={"error": message}, headers=headers)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "status, kind",
    [(400, Rejected), (406, Rejected), (413, Rejected), (415, Rejected), (422, Rejected), (404, Rejected),
     (401, KeyRejected), (403, KeyRejected), (402, CreditsExhausted), (429, RateLimited),
     (408, ServerError), (500, ServerError), (502, ServerError), (503, ServerError), (504, ServerError)],
)
async def test_status_mapping(status: int, kind: type[Exception]) -> None:
    with pytest.raises(kind) as info:
        await call(error(status, "the server's words"))
    assert "the server's words" in str(info.value)
    assert getattr(info.value, "status", None) in (status, None)


@pytest.mark.asyncio
async def test_retry_after_is_read() -> None:
    with pytest.raises(RateLimited) as info:
        await call(error(429, **{"Retry-After": "7"}))
    assert info.value.retry_after == 7.0
    with pytest.raises(RateLimited) as info:
        await call(error(429))
    assert info.value.retry_after is None


@pytest.mark.asyncio
async def test_html_error_body_from_a_proxy() -> None:
    with pytest.raises(ServerError, match="502"):
        await call(lambda r: httpx.Response(502, text="<html><h1>502 Bad Gateway</h1></html>"))


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), httpx.ReadTimeout("slow"),
     httpx.WriteTimeout("slow"), httpx.PoolTimeout("slow"), httpx.ReadError("reset"), httpx.WriteError("pipe"),
     httpx.RemoteProtocolError("peer closed connection without sending complete message body")],
)
async def test_transport_errors(exc: Exception) -> None:
    def raise_it(request: httpx.Request) -> httpx.Response:
        raise exc

    with pytest.raises(TransportError) as caught:
        await call(raise_it)
    # a connection that was never made cannot have been charged; anything lost later may have been
    never_connected = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
    assert isinstance(caught.value, Unreachable) is never_connected
    assert maybe_charged(caught.value) is not never_connected


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "response, reason",
    [
        (httpx.Response(200, content=b'{"ok": 1}', headers={"content-type": "application/json"}), "content-type"),
        (httpx.Response(200, content=b"GIF89a...", headers={"content-type": "image/png"}), "not a PNG"),
        (httpx.Response(200, content=picture(4, 4), headers={"content-type": "image/png"}), "expected 8x6"),
        (httpx.Response(200, content=picture()[:-20], headers={"content-type": "image/png"}), "corrupt or truncated"),
    ],
)
async def test_broken_success_is_retryable(response: httpx.Response, reason: str) -> None:
    with pytest.raises(BrokenResponse, match=reason):
        await call(lambda r: response)


@pytest.mark.asyncio
async def test_corrupt_png_bytes() -> None:
    body = bytearray(picture(64, 48))
    body[40] ^= 0xFF
    with pytest.raises(BrokenResponse):
        await call(lambda r: httpx.Response(200, content=bytes(body), headers={"content-type": "image/png"}))


@pytest.mark.asyncio
async def test_success_sends_key_accept_and_multipart_and_reads_credits() -> None:
    seen: list[httpx.Request] = []

    def ok(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=picture(), headers={"content-type": "image/png",
                              "x-remaining-credits": "41", "x-credits-consumed": "0.5"})

    result = await call(ok)
    assert result.png.joined() == picture()
    assert result.credits_consumed == Decimal("0.5")
    assert result.remaining_credits == Decimal(41)
    request = seen[0]
    assert request.headers["x-api-key"] == KEY
    assert request.headers["accept"] == "image/png"
    body = request.read()
    assert b'name="image_file"' in body and b'name="mask_file"' in body


@pytest.mark.asyncio
async def test_key_echoed_by_the_server_never_reaches_the_message() -> None:
    with pytest.raises(KeyRejected) as info:
        await call(error(403, f"key {KEY} is revoked"))
    assert KEY not in str(info.value)
    assert "***" in str(info.value)


def test_engine_repr_and_errors_hold_no_key() -> None:
    engine = ClipdropEngine(KEY, url=URL)
    assert KEY not in repr(engine)


class _ImportRecorder:
    """A meta-path finder that finds nothing and remembers what was looked for."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        self.names.append(name)
        return None


@pytest.mark.asyncio
async def test_requests_after_the_first_import_nothing(emulator) -> None:  # type: ignore[no-untyped-def]
    """A failed import is searched for again every time: httpcore's per-request `import sniffio` once
    cost a search of sys.path per request (encode/httpcore#1102), a fifth of a small picture's CPU."""
    import sys

    emu = emulator("--work", "stub", key=KEY)
    engine = ClipdropEngine(KEY, url=emu.url)
    recorder = _ImportRecorder()
    try:
        await engine.inpaint(REQUEST)  # connection set-up and lazy imports happen once, here
        sys.meta_path.insert(0, recorder)
        for _ in range(3):
            assert (await engine.inpaint(REQUEST)).png.head(8) == png.SIGNATURE
    finally:
        if recorder in sys.meta_path:
            sys.meta_path.remove(recorder)
        await engine.aclose()
    assert recorder.names == []


@pytest.mark.asyncio
async def test_answers_are_freed_without_the_cyclic_collector(emulator) -> None:  # type: ignore[no-untyped-def]
    """httpx's Response and its stream refer to each other: left alone, every answer and upload
    would wait for a full collection, and a long run's memory would climb past the in-flight budget."""
    import gc

    emu = emulator("--work", "stub", key=KEY)
    engine = ClipdropEngine(KEY, url=emu.url)
    gc.collect()
    gc.disable()
    try:
        before = {id(o) for o in gc.get_objects() if isinstance(o, (httpx.Response, httpx.Request))}  # this module's own
        for _ in range(3):
            result = await engine.inpaint(REQUEST)
            assert result.png.head(8) == png.SIGNATURE
            del result
        alive = [o for o in gc.get_objects() if isinstance(o, (httpx.Response, httpx.Request)) and id(o) not in before]
    finally:
        gc.enable()
        await engine.aclose()
    assert alive == []


def test_tls_is_verified_unless_there_is_no_tls_to_verify(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import ssl

    from batch_inpaint.engines.clipdrop import _trust

    assert _trust("https://clipdrop-api.co/cleanup/v1", None) is True  # the CA bundle
    assert _trust("https://x.test/", tmp_path / "ca.pem") == str(tmp_path / "ca.pem")
    plain = _trust("http://127.0.0.1:8000/cleanup/v1", None)  # no bundle loaded: nothing to verify here
    assert isinstance(plain, ssl.SSLContext)
    assert plain.verify_mode == ssl.CERT_REQUIRED and plain.check_hostname  # TLS it may meet fails, closed
    assert plain.cert_store_stats()["x509_ca"] == 0


def test_answers_are_read_in_large_pieces() -> None:
    import httpcore

    ClipdropEngine(KEY, url=URL)
    assert httpcore.AsyncHTTP11Connection.READ_NUM_BYTES >= 512 * 1024


def test_httpx_command_line_is_loaded_only_when_called() -> None:
    """httpx's own CLI (click, pygments) is not imported with it, and still works if anyone calls it."""
    import subprocess
    import sys

    code = ("import sys, batch_inpaint, httpx\n"
            "assert 'click' not in sys.modules and 'pygments' not in sys.modules\n"
            "try:\n    httpx.main(['--help'])\nexcept SystemExit as exc:\n    assert exc.code == 0\n"
            "assert 'click' in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout or "usage" in done.stdout.lower()
