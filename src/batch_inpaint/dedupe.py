"""Identical pairs (same image, mask and settings) are sent once; the others get a copy of the result."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

import anyio

from .errors import BatchInpaintError
from .output import OutputWriter
from .preflight import Prepared
from .recording import Recorder
from .store import Store


class Dedupe:
    def __init__(self, store: Store, writer: OutputWriter, recorder: Recorder, *, force: bool) -> None:
        self.store = store
        self.writer = writer
        self.recorder = recorder
        self.force = force
        self._sending: dict[str, anyio.Event] = {}

    async def copy_done(self, prepared: Prepared) -> bool:
        """An identical pair already has a result: copy it, pay nothing. True if it did.

        With --force only results made by this run count: the point of --force is to redo the old ones.
        """
        source = await self.store.find_done_output(prepared.content_key, self.recorder.settings_hash,
                                                   self.recorder.run_id if self.force else None)
        if source is None:
            return False
        try:
            output = await self.writer.write(prepared.pair, await self.writer.read(source))
        except (OSError, BatchInpaintError):
            return False
        await self.recorder.copied(prepared, output, source)
        return True

    @asynccontextmanager
    async def turn(self, prepared: Prepared) -> AsyncIterator[bool]:
        """Hold the item's content while it is sent, so an identical pair waits for its result instead
        of paying again. Yields False if that result was copied in the meantime: nothing to send."""
        content = prepared.content_key
        while content in self._sending:
            await self._sending[content].wait()
        if await self.copy_done(prepared):
            yield False
            return
        done = self._sending[content] = anyio.Event()
        try:
            yield True
        finally:
            del self._sending[content]
            done.set()
