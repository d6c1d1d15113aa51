"""A second look at each result, taken as the run records it: a thumbnail strip for the report, and
flags on results worth checking by eye (codes ``flat_fill``, ``unchanged``, ``large_mask``, ``colour_shift``).

Everything is judged on small copies (`LOOK` pixels on the longest side) of what was sent and what came
back, so a look costs one decode of the answer and little more: the sent JPEG is decoded at a reduced
scale (`Image.draft`), the mask and answer are box-reduced.
"""

from __future__ import annotations

import hashlib
import io
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread
import anyio.lowlevel
from PIL import Image, ImageOps

from . import imaging
from .errors import ManifestError
from .output import write_atomic
from .pieces import Pieces
from .preflight import Prepared
from .stats import RunStats
from .store import Store

if TYPE_CHECKING:
    import numpy as np

#: The longest side of the copies the flags are judged on, and of each panel of the thumbnail strip.
LOOK = 384
PANEL = 160
#: The mask's colour over the original in the strip's middle panel.
TINT = (255, 40, 40)

#: A mask covering more of the picture than this leaves little for the fill to go on.
LARGE_MASK = 0.5
#: Mean difference (levels of 255) inside the mask under which the masked region "came back unchanged".
UNCHANGED = 2.5
#: Outside the mask: a mean difference over this, or this share of pixels off by more than `OFF_LEVELS`.
SHIFT_MEAN = 6.0
SHIFT_SHARE = 0.05
OFF_LEVELS = 40
#: A fill is flat when its texture is under this share of its surroundings', and they are textured.
FLAT_SHARE = 0.15
TEXTURED = 3.0

@dataclass(frozen=True, slots=True)
class Look:
    strip: bytes  #: JPEG: the original, the mask drawn over it, the result
    flags: tuple[str, ...]  #: "code: why"


def look(image: bytes, mask_png: bytes, answer: bytes | None, *, preview: Any = None, judge: bool = True) -> Look:
    """``image`` as sent, its mask, the engine's answer (same size as ``image``), or ``preview``, the
    answer already small (an RGB array at the size `LOOK` fits the image to, `InpaintResult.preview`);
    ``judge`` False makes only the strip (an output adopted, not an engine's fresh answer)."""
    import numpy as np  # NumPy and OpenCV load with the first look: a run with nothing to do never pays for them

    sent = _small(image, "RGB")
    size = sent.size
    mask = _small(mask_png, "L", size)
    o = np.asarray(sent, dtype=np.float32)
    if preview is not None and preview.shape[:2] == o.shape[:2]:
        r = np.asarray(preview, dtype=np.float32)
    else:
        if answer is None:
            raise ValueError("no answer to look at")
        r = np.asarray(_small(answer, "RGB", size), dtype=np.float32)
    m = np.asarray(mask) > 127
    flags = judge_result(o, m, r) if judge else ()
    return Look(_strip(o, m, r), flags)


def _small(data: bytes, mode: str, size: tuple[int, int] | None = None) -> Image.Image:
    picture: Image.Image = Image.open(io.BytesIO(data))
    turned = imaging.orientation(picture) in (5, 6, 7, 8)  # a file from the disk; what was sent is upright
    target = size or fit(picture.size[::-1] if turned else picture.size, LOOK)
    if picture.format == "JPEG":
        picture.draft(mode, target[::-1] if turned else target)  # decode at 1/2, 1/4 or 1/8 scale: nearly free
    if imaging.orientation(picture) != 1:
        picture = ImageOps.exif_transpose(picture) or picture
    if picture.mode != mode:
        picture = picture.convert(mode)
    if picture.size != target:
        picture = picture.resize(target, Image.Resampling.BOX)
    return picture


def fit(size: tuple[int, int], longest: int) -> tuple[int, int]:
    """``size`` scaled to at most ``longest`` on its longest side (never up)."""
    scale = min(1.0, longest / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def judge_result(original: np.ndarray, mask: np.ndarray, result: np.ndarray) -> tuple[str, ...]:
    """The flags, from same-sized RGB float arrays and a boolean mask."""
    import cv2
    import numpy as np

    flags = []
    share = float(mask.mean())
    if share > LARGE_MASK:
        flags.append(f"large_mask: the mask covers {share:.0%} of the picture")
    m8 = mask.astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    core = cv2.erode(m8, kernel).astype(bool)  # the box-reduced mask's edge is part picture, part fill
    outside = ~cv2.dilate(m8, kernel, iterations=2).astype(bool)
    diff = np.abs(result - original)
    if core.sum() >= 4:
        inside_diff = float(diff[core].mean())
        if inside_diff < UNCHANGED:
            flags.append(f"unchanged: the masked region came back as it was (mean difference {inside_diff:.1f} levels)")
        else:
            ring = cv2.dilate(m8, kernel, iterations=8).astype(bool) & outside
            around, fill = _texture(original, ring), _texture(result, core)
            if around > TEXTURED and fill < FLAT_SHARE * around:
                flags.append(f"flat_fill: the fill is flat (texture {fill:.1f}) where its surroundings are "
                             f"textured ({around:.1f})")
    if outside.any():
        away = diff[outside]
        mean, off = float(away.mean()), float((away.max(axis=1) > OFF_LEVELS).mean())
        if mean > SHIFT_MEAN or off > SHIFT_SHARE:
            flags.append(f"colour_shift: outside the mask the colours differ from the original (mean "
                         f"difference {mean:.1f} levels, {off:.0%} of pixels off by more than {OFF_LEVELS})")
    return tuple(flags)


def _texture(picture: np.ndarray, where: np.ndarray) -> float:
    """Mean gradient magnitude of the grey picture over ``where``, the region's own edges left out."""
    import cv2
    import numpy as np

    grey = picture.mean(axis=2)
    gx, gy = np.zeros_like(grey), np.zeros_like(grey)
    gx[:, 1:] = np.abs(np.diff(grey, axis=1))
    gy[1:, :] = np.abs(np.diff(grey, axis=0))
    inner = cv2.erode(where.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return float((gx + gy)[inner].mean()) if inner.any() else 0.0


def _strip(original: np.ndarray, mask: np.ndarray, result: np.ndarray) -> bytes:
    import numpy as np

    overlay = original.copy()
    overlay[mask] = overlay[mask] * 0.45 + np.array(TINT, dtype=np.float32) * 0.55
    panels = [Image.fromarray(p.astype(np.uint8)) for p in (original, overlay, result)]
    size = fit(panels[0].size, PANEL)
    gap = 4
    strip = Image.new("RGB", (3 * size[0] + 2 * gap, size[1]), (255, 255, 255))
    for i, panel in enumerate(panels):
        strip.paste(panel.resize(size, Image.Resampling.BILINEAR), (i * (size[0] + gap), 0))
    buf = io.BytesIO()
    strip.save(buf, "JPEG", quality=80)
    return buf.getvalue()


def thumb_name(key: str) -> str:
    """The strip's file under the report's ``thumbs/``: named by the item's key, so a re-run replaces it."""
    digest = hashlib.blake2b(key.encode(), digest_size=10).hexdigest()
    return f"{digest[:2]}/{digest[2:]}.jpg"


def save_strip(thumbs: Path, key: str, strip: bytes) -> None:
    """Written whole but not fsynced: a strip lost in a crash is made again. Raises OutputError."""
    write_atomic(thumbs / thumb_name(key), strip, durable=False)


#: Bytes of answers (with their pictures and masks) waiting for their look at most: one 12 MP answer.
LANE_BYTES = 20_000_000


class Reviewer:
    """Look at each result after it is recorded, in a lane of its own: one thread, so looks run beside
    the sends (never more than one core's worth of them) instead of in the worker that made the result.
    Each strip goes to ``thumbs``, each result's flags to the store (`Store.record_flags`). The lane
    holds `LANE_BYTES` of answers at most: a result that finds it full waits for room, so every result
    is looked at and memory stays bounded. ``thumbs`` None (``--no-report``): no look at all."""

    def __init__(self, thumbs: Path | None, store: Store | None = None, stats: RunStats | None = None,
                 lane_bytes: int = LANE_BYTES) -> None:
        self.thumbs = thumbs
        self._store = store
        self._stats = stats or RunStats()
        self._lane_bytes = lane_bytes
        self._jobs: queue.SimpleQueue[tuple[str, bytes, bytes, Pieces | None, Any, int] | None] = queue.SimpleQueue()
        self._waiting = 0
        self._room = anyio.Condition()
        self._ended = anyio.Event()

    async def offer(self, prepared: Prepared, answer: Pieces | None, preview: Any = None) -> None:
        """Queue a result for its look, once the lane has room for it (an empty lane takes any one). With
        a ``preview`` (`InpaintResult.preview`) the answer is neither kept nor decoded."""
        if self.thumbs is None or (answer is None and preview is None):
            return
        if preview is not None:
            answer = None
        size = (len(answer) if answer is not None else preview.nbytes) + len(prepared.image_bytes) + len(prepared.mask_png)
        async with self._room:
            while self._waiting and self._waiting + size > self._lane_bytes:
                await self._room.wait()
            self._waiting += size
        self._jobs.put((prepared.pair.key, prepared.image_bytes, prepared.mask_png, answer, preview, size))

    async def run(self) -> None:
        """The lane, for the length of a batch; `close` ends it once the looks offered are done."""
        if self.thumbs is None:
            self._ended.set()
            return
        token = anyio.lowlevel.current_token()
        threading.Thread(target=self._lane, args=(token,), name="batch-inpaint look", daemon=True).start()
        try:
            await self._ended.wait()
        finally:
            self._jobs.put(None)  # cancelled (a run stopped at once): the thread ends after its current look

    async def close(self) -> None:
        """No more results: wait for the looks already offered (bounded by the lane's bytes)."""
        self._jobs.put(None)
        await self._ended.wait()

    def _lane(self, token: Any) -> None:
        try:
            while (job := self._jobs.get()) is not None:
                key, image, mask, answer, preview, size = job
                flags = self._look(key, image, mask, answer, preview)
                anyio.from_thread.run(self._looked, key, flags, size, token=token)
            anyio.from_thread.run_sync(self._ended.set, token=token)
        except RuntimeError:
            pass  # the event loop is gone: the run ended without waiting for its looks

    def _look(self, key: str, image: bytes, mask: bytes, answer: Pieces | None, preview: Any) -> tuple[str, ...]:
        assert self.thumbs is not None
        try:
            seen = look(image, mask, None if answer is None else answer.joined(), preview=preview)
            save_strip(self.thumbs, key, seen.strip)
        except Exception:  # an answer that will not decode, a full disk, OpenCV's own errors: whatever it is,
            return ()      # a look that fails costs the item nothing, and the report shows it without a strip
        return seen.flags

    async def _looked(self, key: str, flags: tuple[str, ...], size: int) -> None:
        async with self._room:
            self._waiting -= size
            self._room.notify_all()
        if flags:
            self._stats.flagged += 1
            if self._store is not None:
                try:
                    await self._store.record_flags(key, flags)
                except ManifestError:
                    pass  # the run fails on its manifest anyway, saying so; the lane must still end
