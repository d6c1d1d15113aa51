"""The store seam: the record of every item and every run, behind domain verbs.

Any store keeps these rules: an item is ``done`` only once its output is written; an item an
earlier run left ``in_flight`` had its answer lost (`Store.mark_in_flight` says so, and the item
counts as possibly charged twice); an answer paid for is found again by its request
(`Store.find_answer`), for the same item under new output settings or for an identical pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, AsyncIterator, Literal, Mapping, NamedTuple, Protocol, Sequence

from ..pairing import FileSig

STATUSES = ("pending", "in_flight", "done", "failed", "invalid", "no_mask", "empty_mask")
#: The statuses `Store.problems` lists by default: items that did not come out.
PROBLEMS = ("failed", "invalid")
Problem = Literal["failed", "invalid"]


#: An item's row as far as a re-run's common case needs it, in this order, as a plain tuple: a done
#: and unchanged item is told apart from the rest with two tuple comparisons, no `ItemRow` built.
BRIEF_COLUMNS = ("status", "settings_hash", "output_path", "image_size", "image_mtime_ns", "mask_size", "mask_mtime_ns")
Brief = tuple[str, "str | None", "str | None", "int | None", "int | None", "int | None", "int | None"]


class ItemRow(NamedTuple):
    """What a re-run needs to know of an item: read for every item walked, so a plain tuple."""

    key: str
    status: str
    image_size: int | None
    image_mtime_ns: int | None
    image_hash: str | None
    mask_size: int | None
    mask_mtime_ns: int | None
    mask_hash: str | None
    settings_hash: str | None
    output_path: str | None
    output_size: int | None
    #: Runs in a row that gave this item up on transient errors (0 when it failed for its own reasons).
    failed_runs: int = 0


@dataclass(frozen=True, slots=True)
class SeenItem:
    """An item as the walk found it: new, or changed since it was last seen."""

    key: str
    image_path: str
    mask_path: str | None
    image_sig: FileSig | None
    mask_sig: FileSig | None
    status: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What the store keeps of a prepared item: how a later run tells that nothing changed."""

    image_hash: str
    mask_hash: str
    settings_hash: str
    content_key: str
    fixes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    request_hash: str | None = None


#: Where an answer paid for can be read again: the output itself (a PNG of the whole answer), or a
#: copy kept beside the manifest (`answers.AnswerKeeper`).
ANSWER_IN_OUTPUT = "output"
ANSWER_KEPT = "kept"


@dataclass(frozen=True, slots=True)
class AnswerSource:
    """An answer already paid for, and where to read it."""

    key: str
    request_hash: str
    answer: str
    output_path: str | None
    output_hash: str | None


@dataclass(frozen=True, slots=True)
class OutputRecord:
    path: str  #: relative to the output folder
    hash: str
    size: int


@dataclass(frozen=True, slots=True)
class ItemProblem:
    key: str
    status: str
    error_status: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class RunEnd:
    counts: Mapping[str, int]
    credits_used: Decimal
    remaining_credits: Decimal | None
    requests: int
    possibly_charged_twice: int
    exit_code: int
    retries: int = 0
    rate_limited: int = 0


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: int
    started_at: float
    ended_at: float | None
    pid: int | None
    settings: Mapping[str, Any]
    counts: Mapping[str, int]
    credits_used: Decimal | None
    remaining_credits: Decimal | None
    requests: int | None
    possibly_charged_twice: int | None
    exit_code: int | None
    retries: int | None = None
    rate_limited: int | None = None


@dataclass(frozen=True, slots=True)
class ItemRecord:
    """One item as `export` writes it."""

    key: str
    status: str
    error_status: int | None
    error: str | None
    output_path: str | None
    output_hash: str | None
    credits: str | None
    remaining_credits: str | None
    attempts: int
    sends: int
    possibly_charged: int
    fixes: tuple[str, ...]
    warnings: tuple[str, ...]
    image_path: str | None
    mask_path: str | None
    started_at: float | None
    finished_at: float | None
    seconds: float | None
    #: Why a result is worth a second look (`review`): "code: why", empty when none or not looked at.
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Flagged:
    key: str
    output_path: str | None
    flags: tuple[str, ...]


class LeaseLost(Exception):
    """The item was taken on by another worker while this one held it (paused past its lease, say):
    this worker's result is not recorded."""


@dataclass(frozen=True, slots=True)
class Outlook:
    """What is left of a shared job for one worker (`Leases.outlook`)."""

    claimable: int  #: items it could take now
    held_by_others: int  #: items under live leases of other workers
    soonest_expiry: float | None  #: seconds until the first of those leases runs out


@dataclass(frozen=True, slots=True)
class Worker:
    """A live worker of a shared job, for `status`."""

    run_id: int
    host: str
    pid: int
    started_at: float
    leases: int
    soonest_expiry: float | None


class Leases(Protocol):
    """How the workers of one job share its items (a store many processes write: `store.postgres`)."""

    @property
    def renew_every(self) -> float:
        """Seconds between two renewals of a worker's leases."""

    async def claim(self, key: str, run_id: int) -> bool:
        """Take a due item, unless another live worker holds it."""

    async def holds(self, key: str, run_id: int) -> bool:
        """Still this run's (its lease renewed)."""

    async def renew(self, run_id: int) -> None: ...

    async def outlook(self, run_id: int) -> Outlook: ...

    async def workers(self) -> list[Worker]:
        """The job's live workers, with the leases each holds (for `status`)."""


class Store(Protocol):
    #: The algorithm of the inputs' hashes (`hashing`): a manifest keeps the one it was made with.
    content_hash: str
    #: None for a store only one run writes at a time (its output folder's lock sees to that).
    leases: Leases | None

    @property
    def location(self) -> str:
        """Where the record is, for messages (never a credential)."""

    async def start_run(self, settings: Mapping[str, Any], pid: int) -> int: ...

    async def end_run(self, run_id: int, end: RunEnd) -> None: ...

    async def briefs(self, keys: Sequence[str]) -> dict[str, Brief]:
        """The known keys' rows as `BRIEF_COLUMNS` tuples: cheaper than `lookup` (no hashes, no `ItemRow`)."""

    async def lookup(self, keys: Sequence[str]) -> dict[str, ItemRow]: ...

    async def record_seen(self, items: Sequence[SeenItem]) -> None:
        """Record walked items as their ``status``; an item in flight stays in flight."""

    async def refresh_signatures(self, key: str, image_sig: FileSig, mask_sig: FileSig | None) -> None:
        """Inputs touched but not changed (same content): remember their new size and mtime."""

    async def mark_in_flight(self, key: str, run_id: int, fingerprint: Fingerprint | None) -> bool:
        """Before each request (``fingerprint`` with the first). True if an earlier run left the item in
        flight: its answer was lost, and it may have been charged. A store with `leases` raises
        `LeaseLost` unless this run holds the item: nothing is sent for an item another worker has."""

    async def note_attempt_failure(self, key: str, *, error_status: int | None, error: str,
                                   possibly_charged: bool) -> None:
        """An attempt failed; the item stays in flight until it succeeds or is given up."""

    async def record_done(self, key: str, run_id: int, *, output: OutputRecord, credits: Decimal,
                          remaining: Decimal | None, seconds: float | None, fingerprint: Fingerprint | None,
                          answer: str | None = None) -> None:
        """``answer``: where the answer can be read again (`ANSWER_IN_OUTPUT`, `ANSWER_KEPT`), if anywhere.
        Flags an earlier result had are gone with it."""

    async def record_flags(self, key: str, flags: tuple[str, ...]) -> None:
        """Why a done result is worth a second look (`review`, after `record_done`)."""

    async def record_empty_mask(self, key: str, fingerprint: Fingerprint, output: OutputRecord | None) -> None: ...

    async def record_failure(self, key: str, *, status: Problem, error: str, error_status: int | None,
                             settings_hash: str, transient: bool = False) -> None:
        """``transient``: it ran out of attempts on errors that may pass (5xx, timeouts), so a later run
        tries it again; `ItemRow.failed_runs` counts such runs in a row."""

    async def release(self, key: str, *, error: str | None = None, error_status: int | None = None) -> None:
        """Back to pending: never sent, or the run stopped. With ``error``, say why."""

    async def find_answer(self, request_hash: str, run_id: int | None) -> AnswerSource | None:
        """An answer to this very request that can be read again (got by ``run_id``, if given); the
        item it belongs to may be due again since (its output settings changed)."""

    async def counts(self) -> dict[str, int]: ...

    async def problems(self, limit: int, statuses: tuple[str, ...] = PROBLEMS) -> list[ItemProblem]: ...

    async def flagged(self, limit: int) -> tuple[int, list[Flagged]]:
        """How many done items are flagged for a second look, and the first ``limit`` of them by key."""

    async def credits_spent(self) -> Decimal: ...

    async def runs(self) -> list[RunRecord]: ...

    def items(self) -> AsyncIterator[ItemRecord]:
        """Every item, by key."""

    async def aclose(self) -> None: ...
