"""Offline inpainting with OpenCV (Telea or Navier-Stokes), off the event loop, on every core.

OpenCV and NumPy are imported by the first picture, not with the engine: a run with nothing to do (a
re-run over a done folder) spares their 0.3 s of start-up.
"""

from __future__ import annotations

import os
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import anyio

from ..errors import InvalidInput
from ..pieces import Pieces
from .base import InpaintRequest, InpaintResult, local_shaping

if TYPE_CHECKING:
    import numpy as np


def inpaint_pixels(image: np.ndarray, mask: np.ndarray, *, method: str = "telea", radius: int = 5) -> np.ndarray:
    """Inpaint only the region around the mask: the same result as the whole picture, far cheaper."""
    import cv2
    import numpy as np

    bx, by, bw, bh = cv2.boundingRect(mask)
    if bw == 0 or bh == 0:
        return image
    h, w = mask.shape
    pad = 4 * radius + 8
    x0, x1 = max(0, bx - pad), min(w, bx + bw + pad)
    y0, y1 = max(0, by - pad), min(h, by + bh + pad)
    out = image.copy()
    region = np.ascontiguousarray(image[y0:y1, x0:x1])
    out[y0:y1, x0:x1] = cv2.inpaint(region, np.ascontiguousarray(mask[y0:y1, x0:x1]), radius,
                                         {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}[method])
    return out


def inpaint_png(image_bytes: bytes, mask_png: bytes, *, method: str = "telea", radius: int = 5) -> bytes:
    """Decode, inpaint, encode a PNG. cv2 releases the GIL, so threads use every core."""
    return _inpaint(image_bytes, mask_png, method, radius)[0]


def _inpaint(image_bytes: bytes, mask_png: bytes, method: str, radius: int, preview: bool = False) -> tuple[bytes, Any]:
    """The PNG, and with ``preview`` the result at the size its look judges it (RGB, `review.LOOK`)."""
    import cv2
    import numpy as np

    cv2.setNumThreads(1)  # one picture per thread, one thread per core: OpenCV's own pool would only spin beside them
    image = cv2.imdecode(np.frombuffer(image_bytes, np.uint8), cv2.IMREAD_UNCHANGED)
    mask = cv2.imdecode(np.frombuffer(mask_png, np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None or mask is None:
        raise InvalidInput("local engine could not decode the prepared image or mask")
    if image.dtype != np.uint8:
        image = (image / 257).astype(np.uint8)
    if image.shape[:2] != mask.shape:
        raise InvalidInput("mask and image sizes differ")
    alpha = None
    if image.ndim == 3 and image.shape[2] == 4:
        image, alpha = image[:, :, :3], image[:, :, 3]
    result = inpaint_pixels(image, mask, method=method, radius=radius)  # preflight made the mask strictly 0/255
    if alpha is not None:
        result = np.dstack([result, alpha])
    ok, encoded = cv2.imencode(".png", result)  # OpenCV's default (RLE) is faster here than level 1
    if not ok:
        raise InvalidInput("local engine could not encode the result")
    return encoded.tobytes(), _preview(result) if preview else None


def _preview(result: Any) -> Any:
    import cv2

    from ..review import LOOK, fit

    height, width = result.shape[:2]
    small = cv2.resize(result, fit((width, height), LOOK), interpolation=cv2.INTER_AREA)
    if small.ndim == 2:
        return cv2.cvtColor(small, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(small[:, :, :3], cv2.COLOR_BGR2RGB)


class LocalEngine:
    name = "local"
    endpoint = "local"
    credits_per_request = Decimal(0)

    def __init__(self, *, method: str = "telea", radius: int = 5, threads: int | None = None) -> None:
        self.method = method
        self.radius = radius
        self.shaping = local_shaping(method, radius)
        self._limiter = anyio.CapacityLimiter(threads or os.cpu_count() or 2)

    async def inpaint(self, request: InpaintRequest) -> InpaintResult:
        png, preview = await anyio.to_thread.run_sync(
            lambda: _inpaint(request.image, request.mask_png, self.method, self.radius, preview=True),
            limiter=self._limiter,
        )
        return InpaintResult(Pieces.of(png), preview=preview)

    async def aclose(self) -> None:
        return None
