"""The Clipdrop cleanup API. httpx errors and HTTP statuses become batch-inpaint errors here, and only here."""

from __future__ import annotations

import json
import ssl
from decimal import Decimal, InvalidOperation
from pathlib import Path

import anyio
import httpcore
import httpx

from .. import png
from ..errors import (
    BatchInpaintError,
    BrokenResponse,
    CreditsExhausted,
    KeyRejected,
    RateLimited,
    Rejected,
    ServerError,
    TlsUnverified,
    TransportError,
    Unreachable,
)
from ..pieces import Pieces
from ..retrying import parse_retry_after
from .base import InpaintRequest, InpaintResult, clipdrop_shaping

USER_AGENT = "batch-inpaint/0.1"
READ_BYTES = 512 * 1024


class ClipdropEngine:
    name = "clipdrop"
    #: One successful call costs one credit, unless the answer's x-credits-consumed says otherwise.
    credits_per_request = Decimal(1)

    def __init__(
        self,
        api_key: str,
        *,
        url: str,
        mode: str = "fast",
        connect_timeout: float = 10.0,
        read_timeout: float = 90.0,
        write_timeout: float = 60.0,
        deadline: float = 180.0,
        ca_bundle: Path | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._key = api_key
        self._url = url
        self.endpoint = url
        self._form = {"mode": mode} if mode != "fast" else {}
        self.shaping = clipdrop_shaping(mode)
        self._deadline = deadline
        read_larger_pieces()
        timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout, write=write_timeout, pool=None)
        verify = _trust(url, ca_bundle)
        self._client = httpx.AsyncClient(
            timeout=timeout,
            verify=verify,
            transport=transport,
            headers={"x-api-key": api_key, "accept": "image/png", "user-agent": USER_AGENT},
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def inpaint(self, request: InpaintRequest) -> InpaintResult:
        ext = "jpg" if request.image_type == "image/jpeg" else "png"
        files = {
            "image_file": (f"image.{ext}", request.image, request.image_type),
            "mask_file": ("mask.png", request.mask_png, "image/png"),
        }
        try:
            with anyio.fail_after(self._deadline):
                async with self._client.stream("POST", self._url, files=files, data=self._form) as response:
                    if response.status_code == 200 and _content_type(response) == "image/png":
                        body = Pieces([piece async for piece in response.aiter_bytes()])
                    else:
                        await response.aread()
                        body = None
        except TimeoutError:
            raise TransportError(f"no complete answer within the {self._deadline:g} s deadline") from None
        except httpx.ConnectTimeout:
            raise Unreachable("could not connect to the API: timed out") from None
        except httpx.TimeoutException as exc:
            raise TransportError(f"timed out ({type(exc).__name__})") from None
        except httpx.ConnectError as exc:
            if _certificate_failure(exc):
                raise TlsUnverified(
                    f"the API's TLS certificate could not be verified ({_certificate_failure(exc)}); "
                    "give the right CA bundle with --ca-bundle"
                ) from None
            raise Unreachable(f"could not connect to the API ({self._scrub(str(exc)) or type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise TransportError(f"connection failed ({type(exc).__name__}: {self._scrub(str(exc))})") from None
        try:
            return await self._result(response, body, request.size)
        finally:
            _unpin(response)

    async def _result(self, response: httpx.Response, body: Pieces | None, size: tuple[int, int]) -> InpaintResult:
        status = response.status_code
        if status != 200:
            raise self._error(status, response)
        if body is None:
            raise BrokenResponse(f"200 with content-type {_content_type(response) or 'none'}, not image/png")
        got = png.size(body.head(24))
        if got is None:
            raise BrokenResponse("200 whose body is not a PNG")
        if got != size:
            raise BrokenResponse(f"result is {got[0]}x{got[1]}, expected {size[0]}x{size[1]}")
        await anyio.to_thread.run_sync(_check_png, body)
        consumed = _decimal(response.headers.get("x-credits-consumed"))
        return InpaintResult(
            body,
            credits_consumed=self.credits_per_request if consumed is None else consumed,
            remaining_credits=_decimal(response.headers.get("x-remaining-credits")),
        )

    def _error(self, status: int, response: httpx.Response) -> BatchInpaintError:
        message = self._scrub(_error_message(response))
        if status == 429:
            return RateLimited(parse_retry_after(response.headers.get("retry-after")), message)
        if status in (401, 403):
            return KeyRejected(status, message)
        if status == 402:
            return CreditsExhausted(f"out of credits (HTTP 402): {message}")
        if status >= 500:
            return ServerError(status, message)
        if status in (400, 406, 413, 415, 422):
            return Rejected(status, message)
        if status == 408:
            return ServerError(status, message)
        return Rejected(status, message)

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text


def _trust(url: str, ca_bundle: Path | None) -> str | bool | ssl.SSLContext:
    """What TLS connections are verified against; never nothing, there is no way to turn checks off.

    Loading the CA bundle costs 120 ms of CPU, a tenth of a short run's start. A plain-http endpoint
    (the emulator, a gateway on the same host) needs none: it gets a context that trusts no
    certificate, so a TLS connection it might still make (to an https proxy) fails, never goes unchecked.
    """
    if ca_bundle:
        return str(ca_bundle)
    if httpx.URL(url).scheme == "https":
        return True
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # hostnames checked, certificates required, none trusted


def _certificate_failure(exc: BaseException) -> str | None:
    """The verification error behind a failed connection, if that is what it was."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return str(seen.verify_message or seen.reason or "certificate verify failed")
        if "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return "certificate verify failed"
        seen = seen.__cause__ or seen.__context__
    return None


def _unpin(response: httpx.Response) -> None:
    """A response and its body stream refer to each other (encode/httpx#3733), so without this the
    answer, and through the request the upload, live until the cyclic collector's rare full pass:
    tens of megabytes a picture, piling up past the in-flight budget. The stream is spent by now;
    replacing it breaks the cycle and both are freed as soon as the caller lets go."""
    response.stream = httpx.ByteStream(b"")


def _check_png(body: Pieces) -> None:
    try:
        png.check(body)
    except png.BrokenPng as exc:
        raise BrokenResponse(f"result PNG is corrupt or truncated ({exc})") from None


def _content_type(response: httpx.Response) -> str:
    return str(response.headers.get("content-type", "")).split(";")[0].strip().lower()


def read_larger_pieces() -> None:
    """httpcore reads a response 64 KB at a time, through a dozen Python calls and an h11 buffer copy
    per read: a 16 MB answer took 62 ms of CPU to receive, and 35 ms in 512 KB reads (measured one
    after the other on the same answer, benchmarks/TARGETS.md). 512 KB stays under the 1 MB mmap threshold the CLI sets,
    so each read's buffer comes from the heap, not from fresh pages. httpcore offers no setting for
    this; its class constant is the knob, and if it ever goes away the reads are merely smaller."""
    connection = getattr(httpcore, "AsyncHTTP11Connection", None)
    if connection is not None and getattr(connection, "READ_NUM_BYTES", READ_BYTES) < READ_BYTES:
        connection.READ_NUM_BYTES = READ_BYTES


def _error_message(response: httpx.Response) -> str:
    text = response.text[:500]
    try:
        payload = json.loads(text)
    except ValueError:
        return text.strip().splitlines()[0][:200] if text.strip() else response.reason_phrase
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        return str(payload["error"])[:300]
    return text[:200]


def _decimal(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None
