"""Decide: which walked pairs are due, a chunk at a time, the same way for `run` and for `plan`.

A re-run over a million done items spends its time here, so the common case (done and unchanged)
costs two stats and two tuple comparisons against a brief store row, read a chunk at a time, and no
`Pair` is made for it (`pairing.Folder.sign`); only the rest are looked up in full and go through the
pure decision, `decide`.
"""

from __future__ import annotations

import enum
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import AsyncIterator, Callable, Generator, Sequence, Union

import anyio

from .buckets import BucketPath, Location, is_url
from .pairing import FileSig, Folder, OrphanMask, Pair, UnreadableFolder, Walked, pairs_or_folders
from .hashing import content_hash, fingerprint
from .settings import Settings
from .signatures import Answer, Helper, HelperGone
from .store import Brief, ItemRow, OutputRecord, SeenItem, SqliteStore, Store

WALK_CHUNK = 500
#: Pictures walked before a helper process takes over the stats: a small run never starts one.
HELPER_AFTER = 5000
#: Chunks walked ahead of the one being sorted.
WALK_AHEAD = 3
#: How `Sorted.skipped` names failed items that ran out of runs on transient errors (--retry-failed helps).
GAVE_UP = "gave_up"


class Decision(enum.Enum):
    DUE = "due"
    SKIP = "skip"
    #: Size or mtime moved but the content may be the same: compare hashes before deciding.
    CHECK_HASH = "check_hash"
    #: No result on record, but its output is there (`adoptable`): record it as done, send nothing.
    ADOPT = "adopt"


class OutputIndex:
    """Which outputs exist, one directory listing at a time: items arrive grouped by folder, so a
    re-run over a million done items lists each output folder once instead of a stat per item.
    Outputs are only ever renamed into place whole, so existence is the check that matters. With
    ``shared`` (a fleet's folder), a name the listing lacks is looked for again: another worker may
    have written it since; one run alone writes nothing there that it has not decided on already."""

    def __init__(self, out_dir: Location, *, shared: bool = False) -> None:
        self.root = str(out_dir)
        self.bucket = out_dir if isinstance(out_dir, BucketPath) else None
        self.shared = shared
        self._dir: str | None = None
        self._names: set[str] = set()

    def exists(self, rel: str) -> bool:
        folder, _, name = rel.rpartition("/")
        if folder != self._dir:
            self._dir = folder
            try:
                self._names = self._list(folder)
            except OSError:
                self._names = set()
        return name in self._names or self.shared and self._there(rel)

    def _list(self, folder: str) -> set[str]:
        if self.bucket is not None:
            return (self.bucket / folder).names()
        return set(os.listdir(f"{self.root}/{folder}" if folder else self.root))

    def _there(self, rel: str) -> bool:
        if self.bucket is not None:
            try:
                return (self.bucket / rel).is_file()
            except OSError:
                return False
        return os.path.exists(f"{self.root}/{rel}")


def _absolute(path: Location | None) -> str | None:
    """As the manifest records a file: absolute, so `export` means the same file from any folder (an
    object by its URL)."""
    if isinstance(path, BucketPath):
        return str(path)
    return None if path is None else os.path.abspath(path)


def _same(sig: FileSig | None, size: int | None, mtime_ns: int | None) -> bool:
    if sig is None:
        return size is None
    return sig.size == size and sig.mtime_ns == mtime_ns


def decide(pair: Pair, row: ItemRow | None, *, settings_hash: str, outputs: OutputIndex,
           retry_failed: bool = False, force: bool = False, retry_runs: int = 3) -> Decision:
    """What a run does with a walked pair, given what the store knows of it. Pure, so easy to test."""
    if force or row is None or row.status in ("pending", "in_flight"):
        return Decision.DUE
    same_inputs = _same(pair.image_sig, row.image_size, row.image_mtime_ns) and _same(
        pair.mask_sig, row.mask_size, row.mask_mtime_ns
    )
    if row.status == "no_mask":
        return Decision.SKIP if pair.mask is None and same_inputs else Decision.DUE
    if row.settings_hash != settings_hash:
        return Decision.DUE
    if row.status in ("failed", "invalid"):
        if not same_inputs or retry_failed:
            return Decision.DUE
        # ran out of attempts on transient errors: the next few runs try again by themselves
        return Decision.DUE if 0 < row.failed_runs < retry_runs else Decision.SKIP
    if row.status == "done" and (not row.output_path or not outputs.exists(row.output_path)):
        return Decision.DUE
    if row.status in ("done", "empty_mask"):
        return Decision.SKIP if same_inputs else Decision.CHECK_HASH
    return Decision.DUE


@dataclass(frozen=True, slots=True)
class Adoption:
    """An output already there for an item with no result on record: taken as done, never paid for.
    The hashes are None when only a plan is made (nothing is read then)."""

    pair: Pair
    output: OutputRecord | None
    image_hash: str | None
    mask_hash: str | None


def adoptable(pair: Pair, row: ItemRow | None, outputs: OutputIndex, fmt: str, *, always: bool) -> bool:
    """The item has no result on record, and its output exists: newer than its image and mask (made
    from them, by a run whose record was lost or by another tool), or at all with ``always``."""
    if pair.problem is not None or pair.mask is None or pair.image_sig is None or pair.mask_sig is None:
        return False
    if row is not None and (row.status not in ("pending", "in_flight") or row.output_path):
        return False
    rel = pair.output_rel(fmt)
    if not outputs.exists(rel):
        return False
    if always:
        return True
    try:
        made = os.stat(f"{outputs.root}/{rel}").st_mtime_ns
    except OSError:
        return False
    return made >= max(pair.image_sig.mtime_ns, pair.mask_sig.mtime_ns)


def adopt(pair: Pair, out_dir: str, fmt: str, algorithm: str) -> Adoption | None:
    """Read what recording the adoption needs: the output's hash, the inputs' hashes (by ``algorithm``)."""
    rel = pair.output_rel(fmt)
    try:
        data = (BucketPath(out_dir) / rel if is_url(out_dir) else Path(out_dir, rel)).read_bytes()
        image_hash = content_hash(pair.image.read_bytes(), algorithm)
        mask_hash = content_hash(pair.mask.read_bytes(), algorithm) if pair.mask is not None else None
    except OSError:
        return None
    return Adoption(pair, OutputRecord(rel, fingerprint(data), len(data)), image_hash, mask_hash)


@dataclass
class Sorted:
    """A chunk of the walk, sorted. ``skipped`` counts items left as they are, by their recorded status."""

    due: list[Pair] = field(default_factory=list)
    adopted: list[Adoption] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    no_mask: list[Pair] = field(default_factory=list)
    invalid: list[tuple[Pair, str]] = field(default_factory=list)
    orphans: list[OrphanMask] = field(default_factory=list)
    unreadable: list[UnreadableFolder] = field(default_factory=list)

    @property
    def pairs(self) -> int:
        return (len(self.due) + len(self.adopted) + sum(self.skipped.values()) + len(self.no_mask)
                + len(self.invalid))

    def skip(self, status: str, count: int = 1) -> None:
        self.skipped[status] = self.skipped.get(status, 0) + count


class Triage:
    """Sorts walked chunks. With ``record``, new and changed items are written to the store (`run`);
    without, the store is only read (`plan`)."""

    def __init__(self, store: Store, settings: Settings, settings_hash: str, *, record: bool,
                 cpu: anyio.CapacityLimiter | None = None) -> None:
        assert settings.out_dir is not None
        self.store = store
        self.settings = settings
        self.settings_hash = settings_hash
        self.record = record
        self._outputs = OutputIndex(settings.out_dir, shared=store.leases is not None)
        self._cpu = cpu
        #: Outputs with no record are taken as done, but not in a shared job: there every worker writes
        #: its outputs a moment before it records them. With a bucket on either side only when
        #: --adopt-existing says so: an object's signature holds no time to compare.
        self._adopts = not settings.force and store.leases is None and (settings.adopt_existing
                                                                        or not settings.in_buckets)

    async def sort(self, chunk: Chunk) -> Sorted:
        result = Sorted(orphans=[item for item in chunk if isinstance(item, OrphanMask)],
                        unreadable=[item for item in chunk if isinstance(item, UnreadableFolder)])
        pairs = [item for item in chunk if isinstance(item, Pair)]
        slices = [item for item in chunk if isinstance(item, Slice)]
        answers: list[Answer | None] = [None] * len(slices)
        if any(piece.taken is not None for piece in slices):
            answers = await anyio.to_thread.run_sync(_answers, slices)  # waits for the helper
        briefs: dict[str, Brief] = {}
        if not self.settings.force:
            for answer in answers:
                if answer is not None and answer[1] is not None:
                    briefs.update(answer[1])
            keys = [p.key for p in pairs] + [key for piece, answer in zip(slices, answers)
                                             if answer is None or answer[1] is None for key in piece.keys()]
            if keys:
                briefs.update(await self.store.briefs(keys))
        pairs = await anyio.to_thread.run_sync(self._skim, pairs, slices, answers, briefs, result)
        if not pairs:
            return result
        known = [p.key for p in pairs if self.settings.force or p.key in briefs]
        rows = await self.store.lookup(known) if known else {}
        undecided = await anyio.to_thread.run_sync(self._classify, pairs, rows, result)
        seen: list[SeenItem] = []
        for pair, row, decision in undecided:
            if decision is Decision.CHECK_HASH and row is not None and await self._unchanged(pair, row):
                decision = Decision.SKIP
            if decision is Decision.SKIP and row is not None:
                result.skip(row.status)
                continue
            if decision is Decision.ADOPT:
                adoption = await self._adopt(pair)
                if adoption is not None:
                    result.adopted.append(adoption)
                    seen.append(SeenItem(pair.key, _absolute(pair.image) or "", _absolute(pair.mask), pair.image_sig,
                                         pair.mask_sig, "pending"))
                    continue
            seen.append(self._seen(pair, result))
        if seen and self.record:
            await self.store.record_seen(seen)
        return result

    def _skim(self, pairs: list[Pair], slices: list[Slice], answers: list[Answer | None], briefs: dict[str, Brief],
              result: Sorted) -> list[Pair]:
        """In a worker thread: skip the items done (or with an empty mask) under these settings whose
        inputs kept their size and mtime, as `decide` would; the rest, signed, for `decide`. The
        slices of walked folders are stat'ed here (or were, with ``answers``, by the helper), so a
        skipped item costs its stats and two tuple comparisons, and no `Pair`."""
        known = _Known(briefs, self.settings_hash, self._outputs.exists)
        rest = [p for p in pairs if p.problem is not None or p.image_sig is None
                or not known(p.key, p.image_sig + (p.mask_sig or (None, None)))]
        for piece, answer in zip(slices, answers):
            rest += piece.folder.sign(piece.start, piece.stop, known, None if answer is None else answer[0])
            if piece.last:
                result.orphans += piece.folder.orphan_masks()
        if known.done:
            result.skip("done", known.done)
        if known.empty:
            result.skip("empty_mask", known.empty)
        return rest

    def _classify(self, pairs: list[Pair], rows: dict[str, ItemRow],
                  result: Sorted) -> list[tuple[Pair, ItemRow | None, Decision]]:
        """In a worker thread (the output index lists folders): skip what is done and unchanged."""
        s = self.settings
        undecided: list[tuple[Pair, ItemRow | None, Decision]] = []
        for pair in pairs:
            row = rows.get(pair.key)
            decision = decide(pair, row, settings_hash=self.settings_hash, outputs=self._outputs,
                              retry_failed=s.retry_failed, force=s.force, retry_runs=s.retry_runs)
            if decision is Decision.DUE and self._adopts and adoptable(pair, row, self._outputs, s.output_format,
                                                                      always=s.adopt_existing):
                decision = Decision.ADOPT
            if decision is Decision.SKIP and row is not None:
                result.skip(GAVE_UP if row.status == "failed" and row.failed_runs else row.status)
            else:
                undecided.append((pair, row, decision))
        return undecided

    async def _adopt(self, pair: Pair) -> Adoption | None:
        if not self.record:  # a plan only counts them
            return Adoption(pair, None, None, None)
        return await anyio.to_thread.run_sync(adopt, pair, self._outputs.root, self.settings.output_format,
                                              self.store.content_hash, limiter=self._cpu)

    def _seen(self, pair: Pair, result: Sorted) -> SeenItem:
        if pair.problem is not None:
            status, error = "invalid", pair.problem
            result.invalid.append((pair, pair.problem))
        elif pair.mask is None:
            status, error = "no_mask", "no mask for this image"
            result.no_mask.append(pair)
        else:
            status, error = "pending", None
            result.due.append(pair)
        return SeenItem(pair.key, _absolute(pair.image) or "", _absolute(pair.mask), pair.image_sig,
                        pair.mask_sig, status, error)

    async def _unchanged(self, pair: Pair, row: ItemRow) -> bool:
        """Size or mtime moved: the item is still done only if both files hash the same as before."""
        if not await anyio.to_thread.run_sync(_same_content, pair, row.image_hash, row.mask_hash,
                                           self.store.content_hash, limiter=self._cpu):
            return False
        if self.record and pair.image_sig is not None:
            await self.store.refresh_signatures(pair.key, pair.image_sig, pair.mask_sig)
        return True


def _same_content(pair: Pair, image_hash: str | None, mask_hash: str | None, algorithm: str) -> bool:
    try:
        return content_hash(pair.image.read_bytes(), algorithm) == image_hash and (
            pair.mask is None or content_hash(pair.mask.read_bytes(), algorithm) == mask_hash)
    except OSError:
        return False


class _Known:
    """Whether a stat'ed item is done (or has an empty mask) under these settings with the same inputs,
    by its brief store row; counts those it takes."""

    def __init__(self, briefs: dict[str, Brief], settings_hash: str, exists: Callable[[str], bool]) -> None:
        self.briefs, self.exists = briefs, exists
        self.done_row, self.empty_row = ("done", settings_hash), ("empty_mask", settings_hash)
        self.done = self.empty = 0

    def __call__(self, key: str, sigs: tuple[int | None, ...]) -> bool:
        brief = self.briefs.get(key)
        if brief is None or brief[3:] != sigs:
            return False
        if brief[:2] == self.done_row and brief[2] and self.exists(brief[2]):
            self.done += 1
            return True
        if brief[:2] == self.empty_row:
            self.empty += 1
            return True
        return False


@dataclass(frozen=True, slots=True)
class Slice:
    """Images ``[start:stop]`` of a walked folder, to be stat'ed as they are sorted; ``last`` brings
    the folder's orphan masks. ``taken``: their signatures and brief rows, on their way from a helper
    process."""

    folder: Folder
    start: int
    stop: int
    taken: Future[Answer] | None = field(default=None, compare=False)

    @property
    def last(self) -> bool:
        return self.stop == len(self.folder.images)

    @classmethod
    def cut(cls, folder: Folder, size: int) -> list[Slice]:
        """The folder in slices of ``size`` images at most; one empty slice for a folder of masks only."""
        count = len(folder.images)
        return [cls(folder, start, min(start + size, count)) for start in range(0, count or 1, size)]

    def keys(self) -> list[str]:
        rel = self.folder.rel
        return [rel + name for name, _ in self.folder.images[self.start:self.stop]]

    def answer(self) -> Answer | None:
        """The helper's answer for this slice, waited for; None without one (the caller does the work)."""
        try:
            return None if self.taken is None else self.taken.result()
        except HelperGone:
            return None


def _answers(slices: list[Slice]) -> list[Answer | None]:
    return [piece.answer() for piece in slices]


Chunk = list[Union[Walked, Slice]]


async def walked_chunks(settings: Settings, size: int = WALK_CHUNK, helper_after: int | None = HELPER_AFTER,
                        store: Store | None = None) -> AsyncIterator[Chunk]:
    """The walk in chunks of about ``size`` pictures, `WALK_AHEAD` chunks ahead in a thread of its own:
    the folders listed and paired, not stat'ed (`Triage.sort` stats them as it compares); or a pairs
    file's pairs. Past ``helper_after`` pictures (None: never), a helper process stats each slice as it is
    walked and reads its brief rows from a SQLite ``store``, so that work is done on another core by
    the time the slice is sorted (`signatures`)."""
    briefs = store.brief_source() if isinstance(store, SqliteStore) and not settings.force else None
    chunks, end = _chunks(settings, size, helper_after, briefs), Chunk()
    walker = ThreadPoolExecutor(1, thread_name_prefix="walk")
    ahead = deque(walker.submit(next, chunks, end) for _ in range(WALK_AHEAD))
    try:
        while chunk := await anyio.to_thread.run_sync(ahead.popleft().result):
            ahead.append(walker.submit(next, chunks, end))  # the next chunks walked while this one is sorted
            yield chunk
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_stop, walker, chunks)


def _stop(walker: ThreadPoolExecutor, chunks: Generator[Chunk, None, None]) -> None:
    walker.shutdown()  # lets the chunk being walked finish
    chunks.close()  # stops the helper


def _chunks(settings: Settings, size: int, helper_after: int | None,
            briefs: tuple[str, str] | None) -> Generator[Chunk, None, None]:
    chunk: Chunk = []
    count = walked = 0
    helper: Helper | None = None
    try:
        for item in pairs_or_folders(settings):
            pieces: Sequence[Walked | Slice] = Slice.cut(item, size) if isinstance(item, Folder) else [item]
            for piece in pieces:
                if isinstance(piece, Slice):
                    walked += piece.stop - piece.start
                    if helper is None and helper_after is not None and walked > helper_after:
                        helper, helper_after = Helper.start(), None
                    if helper is not None and piece.stop > piece.start and piece.folder.listed is None:
                        request = piece.folder.slice_request(piece.start, piece.stop)
                        piece = replace(piece, taken=helper.submit(request, briefs, piece.folder.rel))
                chunk.append(piece)
                count += piece.stop - piece.start if isinstance(piece, Slice) else 1
                if count >= size:
                    yield chunk
                    chunk, count = [], 0
        if chunk:
            yield chunk
    finally:
        if helper is not None:
            helper.close()
