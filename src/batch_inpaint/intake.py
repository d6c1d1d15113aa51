"""The intake: walk, decide, preflight. Pairs stream in; prepared items that need a request stream out.

Bounded streams keep memory flat for any folder size, and the first request goes out while the walk
is still running.
"""

from __future__ import annotations

import math
import os

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .buckets import BucketPath, is_url
from .compose import Finish
from .errors import BatchInpaintError, InvalidInput
from .output import OutputWriter
from .pairing import Pair
from .preflight import PreflightOptions, Prepared, prepare, read_pair
from .recording import Recorder
from .roles import masks_inside_input
from .settings import Settings
from .settle import Settle
from .stats import RunStats
from .store.base import Leases
from .triage import GAVE_UP, Sorted, Triage, walked_chunks


#: More pictures prepared at once when they come from a bucket: each waits on the store's answers, not
#: on a core.
BUCKET_READERS = 8
#: Seconds between two looks at a shared job's outlook, once this worker's walk is done: a worker
#: whose share is done ends within this of the job's end (one small query each).
SWEEP_EVERY = 1.0


class Intake:
    def __init__(self, settings: Settings, triage: Triage, recorder: Recorder, writer: OutputWriter,
                 stats: RunStats, cpu: anyio.CapacityLimiter, finish: Finish, settle: Settle | None = None) -> None:
        self.settings = settings
        self.triage = triage
        self.recorder = recorder
        self.writer = writer
        self.stats = stats
        self.options = PreflightOptions.from_settings(settings, triage.store.content_hash)
        self._cpu = cpu
        self._finish = finish
        self.settle = settle
        self.leases = triage.store.leases
        #: Keys a sweep walked again (`_sweep`), until they are taken or not.
        self._swept: set[str] = set()
        #: Keys the first walk left for a later pass, their files still being written (`watch --settle`).
        self._unsettled: set[str] = set()

    async def run(self, ready: MemoryObjectSendStream[Prepared]) -> None:
        async with anyio.create_task_group() as tg, ready:
            due_send, due_recv = anyio.create_memory_object_stream[Pair](64)
            tg.start_soon(self._feed, due_send)
            async with due_recv:
                for _ in range((os.cpu_count() or 2) + 1 + (BUCKET_READERS if self._from_buckets else 0)):
                    tg.start_soon(self._preflight_loop, due_recv.clone(), ready.clone())

    async def _feed(self, due: MemoryObjectSendStream[Pair]) -> None:
        inside = masks_inside_input(self.settings)
        if inside is not None:
            self.stats.notice(f"the masks folder {self.settings.masks_dir} is inside the input folder: "
                              f"its files are used as masks only, not as pictures to clean")
        annotations = self.options.annotations
        for orphan in annotations.orphans[:20] if annotations is not None else []:
            self.stats.notice(f"an annotation of no listed image, left out: {orphan}")
        async with due:
            async for chunk in walked_chunks(self.settings, store=self.triage.store):
                sorted_ = await self.triage.sort(chunk)
                for adoption in sorted_.adopted:
                    await self.recorder.adopted(adoption)
                for pair in self._count(sorted_):
                    await due.send(pair)
            self.stats.walk_finished = True
            if self.leases is not None:
                await self._sweep(self.leases, due)

    async def _take(self, pair: Pair) -> bool:
        """A shared job: the item is this worker's only if no other has it. Taken just before it is
        prepared, not as it is walked: a worker holds only the few items it is about to send, and a
        worker that joins late finds work left."""
        if self.leases is None:
            return True
        key, stats = pair.key, self.stats
        swept = key in self._swept
        self._swept.discard(key)
        taken = await self.leases.claim(key, self.recorder.run_id)
        if swept and key in self._unsettled:  # the first walk counted it as still being written
            self._unsettled.discard(key)
            stats.unsettled -= 1
            if taken:
                stats.due += 1
            else:
                stats.elsewhere += 1
        elif taken and swept:  # the first walk counted it as another worker's
            stats.due += 1
            stats.elsewhere = max(0, stats.elsewhere - 1)
        elif not taken and not swept:
            stats.due -= 1
            stats.elsewhere += 1
        return taken

    async def _sweep(self, leases: Leases, due: MemoryObjectSendStream[Pair]) -> None:
        """A shared job, walked: stay while other workers hold items, and take on those whose worker died
        (its leases ran out) or gave them back. Ends when no other worker holds an item and a walk has
        taken what it could (what is left is no file a walk finds: deleted since it was recorded).

        A walk again only when the job changed since the last one left it, and while others still
        work, at most once per lease renewal: a million-item folder is not walked every second."""
        run_id = self.recorder.run_id
        left: tuple[int, int] | None = None  # the job as the last walk left it
        walked, capture = -math.inf, False
        while True:
            while due.statistics().current_buffer_used:  # what this worker walked is taken or not, first
                await anyio.sleep(0.2)
            outlook = await leases.outlook(run_id)
            state = (outlook.claimable, outlook.held_by_others)
            if capture:
                left, capture = state, False
            if outlook.claimable and state != left and (
                    not outlook.held_by_others or anyio.current_time() - walked >= leases.renew_every):
                walked, capture = anyio.current_time(), True
                async for chunk in walked_chunks(self.settings, store=self.triage.store):
                    for pair in (await self.triage.sort(chunk)).due:
                        if self.settle is None or self.settle.ready(pair):  # a file being copied waits here too
                            self._swept.add(pair.key)
                            await due.send(pair)
                continue
            if not outlook.held_by_others and (not outlook.claimable or state == left):
                return
            await anyio.sleep(SWEEP_EVERY)

    def _count(self, sorted_: Sorted) -> list[Pair]:
        stats = self.stats
        for orphan in sorted_.orphans:
            stats.orphan(str(orphan.path))
        stats.seen += sorted_.pairs
        for status, count in sorted_.skipped.items():
            if status in ("done", "empty_mask"):
                stats.already_done += count
            elif status == "no_mask":
                stats.without_mask([], earlier=count)
            elif status == GAVE_UP:
                stats.kept_gave_up += count
            else:
                stats.kept_failed += count
        stats.without_mask([pair.key for pair in sorted_.no_mask])
        for pair, reason in sorted_.invalid:
            stats.problem(pair.key, "invalid", reason)
        for folder in sorted_.unreadable:
            stats.problem(folder.rel, "invalid", folder.reason)
        due = sorted_.due
        if self.settle is not None:  # files still being written wait for a later pass
            due = [pair for pair in due if self.settle.ready(pair)]
            stats.unsettled += len(sorted_.due) - len(due)
            if self.leases is not None and len(due) < len(sorted_.due):  # a sweep may take them in this pass
                self._unsettled.update({pair.key for pair in sorted_.due} - {pair.key for pair in due})
        stats.due += len(due) + len(sorted_.invalid) + len(sorted_.unreadable)
        return due

    @property
    def _from_buckets(self) -> bool:
        s = self.settings
        return any(isinstance(where, BucketPath) for where in (s.input_dir, s.masks_dir, s.mask_file, s.pairs_file))

    @staticmethod
    def _remote(pair: Pair) -> bool:
        return is_url(pair.image_file) or pair.mask_file is not None and is_url(pair.mask_file)

    async def _preflight_loop(self, due: MemoryObjectReceiveStream[Pair], ready: MemoryObjectSendStream[Prepared]) -> None:
        async with due, ready:
            async for pair in due:
                if not await self._take(pair):
                    continue
                prepared = await self._preflight(pair)
                if prepared is not None:
                    await ready.send(prepared)

    async def _preflight(self, pair: Pair) -> Prepared | None:
        """Prepared for sending, or None when the item was settled without a request."""
        try:
            data = None
            if self._remote(pair):  # read while waiting on the store, not holding a core
                data = await anyio.to_thread.run_sync(read_pair, pair, self.options)
            prepared = await anyio.to_thread.run_sync(prepare, pair, self.options, data, limiter=self._cpu)
        except InvalidInput as exc:
            await self.recorder.settle(pair.key, "invalid", str(exc))
            return None
        except Exception as exc:  # one strange file must never stop the run
            await self.recorder.settle(pair.key, "invalid", f"could not be prepared ({type(exc).__name__}: {exc})")
            return None
        self.stats.fixed(prepared.fixes)
        for warning in prepared.warnings:
            self.stats.note(pair.key, warning)
        if prepared.empty_mask:
            await self._empty_mask(prepared)
            return None
        return prepared

    async def _empty_mask(self, prepared: Prepared) -> None:
        key = prepared.pair.key
        self.stats.empty_mask += 1
        empty = "no object of the chosen classes" if self.options.annotations is not None else "the mask is empty"
        self.stats.note(key, f"{empty}: nothing to remove, no request sent")
        output = None
        if self.settings.copy_empty:
            try:
                output = await self.writer.write(prepared.pair, await self._finish(prepared, None))
            except BatchInpaintError as exc:
                self.stats.note(key, f"could not copy the original: {exc}")
        await self.recorder.empty_mask(prepared, output)
