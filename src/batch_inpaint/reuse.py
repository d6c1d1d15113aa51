"""Pay once per request: an answer already paid for makes the output again, with no request.

Two cases, one mechanism (`Store.find_answer`, by the request's identity): the same item after a change
that leaves its request as it was (output format, quality, or a setting that did not change its bytes),
and an identical pair (same image, mask and settings) while or after its twin is sent.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

import anyio

from .answers import Answers
from .compose import Finish
from .errors import BatchInpaintError
from .output import OutputWriter
from .hashing import same_content
from .pieces import Pieces
from .preflight import Prepared
from .recording import Recorder
from .store import ANSWER_KEPT, AnswerSource, OutputRecord, Store



class Reuse:
    def __init__(self, store: Store, writer: OutputWriter, recorder: Recorder, answers: Answers, finish: Finish,
                 *, force: bool) -> None:
        self.store = store
        self.writer = writer
        self.recorder = recorder
        self.answers = answers
        self.finish = finish
        self.force = force
        self._sending: dict[str, anyio.Event] = {}

    async def reuse(self, prepared: Prepared) -> bool:
        """Make the output from an answer to this very request, paying nothing. True if it did.

        With --force only answers got by this run count: the point of --force is to buy them again.
        """
        request = self.recorder.request_hash(prepared)
        source = await self.store.find_answer(request, self.recorder.run_id if self.force else None)
        if source is None:
            return False
        png = await self.answers.read(source)
        if png is None:
            return False
        try:
            output = await self._write(prepared, source, await self.finish(prepared, png))
            where = await self.answers.settle(prepared, request, png, kept_already=source.answer == ANSWER_KEPT)
        except (OSError, BatchInpaintError):
            return False
        await self.recorder.reused(prepared, output, source, where, png)
        return True

    async def _write(self, prepared: Prepared, source: AnswerSource, data: Pieces) -> OutputRecord:
        rel = prepared.pair.output_rel(self.writer.fmt)
        if source.key == prepared.pair.key and source.output_path == rel and same_content(source.output_hash, data):
            assert source.output_hash is not None
            return OutputRecord(rel, source.output_hash, len(data))  # the output as it is already: nothing to write
        return await self.writer.write(prepared.pair, data)

    @asynccontextmanager
    async def turn(self, prepared: Prepared) -> AsyncIterator[bool]:
        """Hold the request while it is sent, so an identical pair waits for its answer instead of
        paying again. Yields False if that answer was reused in the meantime: nothing to send."""
        request = self.recorder.request_hash(prepared)
        while request in self._sending:
            await self._sending[request].wait()
        if await self.reuse(prepared):
            yield False
            return
        done = self._sending[request] = anyio.Event()
        try:
            yield True
        finally:
            del self._sending[request]
            done.set()
