"""Answers paid for, read again: a change of output format, quality or metadata re-encodes the answer
already bought instead of buying it again, and an identical pair reuses its twin's.

A PNG output of the whole picture is the answer itself, less the metadata chunks put in it, so nothing
more is kept for it. A lossy output (JPEG, WebP) or one pasted back into a larger original is not: its
answer is kept beside the manifest, ``OUT/.batch-inpaint/answers/<request>.png``, unless
``--no-keep-answers`` says the disk matters more (a later format change then costs a credit a picture).
"""

from __future__ import annotations

import anyio

from . import png
from .buckets import Location
from .locations import answers_dir
from .output import write_atomic
from .hashing import same_content
from .pieces import Pieces
from .preflight import Prepared
from .store import ANSWER_IN_OUTPUT, ANSWER_KEPT, AnswerSource


class Answers:
    def __init__(self, out_dir: Location, fmt: str, *, keep: bool) -> None:
        self.out_dir = out_dir
        self.folder = answers_dir(out_dir)
        self.fmt = fmt
        self.keep_lossy = keep
        self.kept = 0
        self.kept_bytes = 0

    def where(self, prepared: Prepared) -> str | None:
        """Where this item's answer can be read again once its output is written, if anywhere."""
        if self.fmt == "png" and prepared.placement is None:
            return ANSWER_IN_OUTPUT
        return ANSWER_KEPT if self.keep_lossy else None

    async def settle(self, prepared: Prepared, request_hash: str, answer: Pieces, *, kept_already: bool = False) -> str | None:
        """Once the output is written, before the item is recorded done: keep the answer if its output
        is not the answer itself. Where it can be read again, for the record."""
        where = self.where(prepared)
        if where == ANSWER_KEPT and not kept_already:
            await anyio.to_thread.run_sync(write_atomic, self.folder / f"{request_hash}.png", answer)
            self.kept += 1
            self.kept_bytes += len(answer)
        elif where is None and kept_already:
            where = ANSWER_KEPT  # kept before --no-keep-answers: still there
        return where

    async def read(self, source: AnswerSource) -> Pieces | None:
        """The answer's PNG, or None if it is gone, damaged, or the output it lives in was edited."""
        return await anyio.to_thread.run_sync(self._read, source)

    def _read(self, source: AnswerSource) -> Pieces | None:
        try:
            if source.answer == ANSWER_KEPT:
                answer = Pieces.of((self.folder / f"{source.request_hash}.png").read_bytes())
            elif source.answer == ANSWER_IN_OUTPUT and source.output_path:
                data = (self.out_dir / source.output_path).read_bytes()
                if not same_content(source.output_hash, data):
                    return None  # edited since: not the answer any more
                answer = Pieces.of(png.without_metadata(data))
            else:
                return None
            png.check(answer)
        except (OSError, ValueError):  # gone, or damaged (png.BrokenPng)
            return None
        return answer
