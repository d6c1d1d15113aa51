"""Live counters of a run, read by the progress display and turned into the summary and exit code."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .events import Sink

MAX_LISTED = 1000


@dataclass
class RunStats:
    started: float = field(default_factory=time.monotonic)
    walk_finished: bool = False
    seen: int = 0
    due: int = 0
    already_done: int = 0
    done: int = 0
    copied: int = 0  #: made from an identical pair's answer
    adopted: int = 0  #: outputs already there with no result on record, taken as done
    reencoded: int = 0  #: made again from the item's own answer (new output settings): nothing paid
    answers_kept: int = 0
    answers_kept_bytes: int = 0
    failed: int = 0
    invalid: int = 0
    kept_failed: int = 0  #: failed or invalid before, waiting for a change to their files
    kept_gave_up: int = 0  #: failed on transient errors in --retry-runs runs in a row
    no_mask: int = 0
    empty_mask: int = 0
    orphan_masks: int = 0
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    possibly_charged: int = 0
    resent_after_crash: int = 0
    #: Results worth a second look (`review`), made this run.
    flagged: int = 0
    credits_used: Decimal = Decimal(0)
    remaining_credits: Decimal | None = None
    problems: list[tuple[str, str, str]] = field(default_factory=list)
    #: Images of this run without a mask, by name (up to MAX_LISTED); ``no_mask_more`` counts the rest,
    #: and those an earlier run recorded.
    no_mask_keys: list[str] = field(default_factory=list)
    no_mask_more: int = 0
    noted: int = 0
    notes: list[tuple[str, str]] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    fixes: dict[str, int] = field(default_factory=dict)
    #: Said once about the whole run (the pace was lowered, a folder was left out), in order.
    notices: list[str] = field(default_factory=list)
    notices_shown: int = 0
    #: The limiter's pace (requests a minute) and the end of its pause (loop time), for the display.
    pace: float | None = None
    paused_until: float = 0.0
    verbose: bool = False
    events: list[str] = field(default_factory=list)
    #: Problems already shown as they happened (`progress.PlainProgress`).
    problems_shown: int = 0
    #: Pairs left for a later pass because a file was still being written (`watch --settle`).
    unsettled: int = 0
    #: A shared job (`store.postgres`): items another worker took, and results not recorded because
    #: another worker took the item on while this one was paused past its lease.
    elsewhere: int = 0
    lease_lost: int = 0
    #: Where events for machines go (`events.JsonLines`), if anywhere.
    sink: Sink | None = field(default=None, repr=False)

    def emit(self, event: str, level: str = "info", **fields: Any) -> None:
        if self.sink is not None:
            self.sink(event, level, fields)

    def event(self, text: str) -> None:
        """An item was settled: shown as a line of its own with --verbose."""
        if self.verbose:
            self.events.append(text)

    def problem(self, key: str, status: str, reason: str, *, attempts: int = 0, seconds: float | None = None,
                http_status: int | None = None) -> None:
        """A failed or invalid item (``seconds`` since its first request, if one went out; no credit is
        counted for an item without a result)."""
        self.emit(f"item_{status}", "error" if status == "failed" else "warning", path=key, status=status,
                  attempts=attempts, seconds=seconds, credits=0, error=reason, http_status=http_status)
        if status == "failed":
            self.failed += 1
        else:
            self.invalid += 1
        if len(self.problems) < MAX_LISTED:
            self.problems.append((key, status, reason))

    def without_mask(self, keys: list[str], earlier: int = 0) -> None:
        self.no_mask += len(keys) + earlier
        for key in keys:
            self.emit("item_skipped", path=key, status="no_mask", reason="no mask for this image")
        room = max(0, MAX_LISTED - len(self.no_mask_keys))
        self.no_mask_keys.extend(keys[:room])
        self.no_mask_more += len(keys[room:]) + earlier

    @property
    def left(self) -> int:
        """Due items with no outcome yet: the next run takes them up."""
        settled = self.done + self.copied + self.reencoded + self.failed + self.invalid + self.empty_mask
        return max(0, self.due - settled)

    def note(self, key: str, text: str) -> None:
        self.noted += 1
        if len(self.notes) < MAX_LISTED:
            self.notes.append((key, text))

    def notice(self, text: str) -> None:
        if text not in self.notices:
            self.notices.append(text)
            self.emit("notice", "warning", message=text)

    def orphan(self, path: str) -> None:
        self.orphan_masks += 1
        if len(self.orphans) < MAX_LISTED:
            self.orphans.append(path)

    def fixed(self, fixes: tuple[str, ...]) -> None:
        for fix in fixes:
            kind = re.sub(r" (from |by |to )?(\d+x\d+|\d+px)", "", fix)  # "downscaled for the API, ..."
            self.fixes[kind] = self.fixes.get(kind, 0) + 1

    @property
    def settled(self) -> int:
        """Items this run changed the record of (a result made, adopted, failed, invalid, empty)."""
        return (self.done + self.copied + self.reencoded + self.adopted + self.failed + self.invalid
                + self.empty_mask)

    @property
    def finished(self) -> int:
        return self.done + self.copied + self.reencoded + self.failed + self.invalid + self.no_mask + self.empty_mask

    @property
    def unfinished_items(self) -> int:
        """Items that are not done: this run's failures and earlier ones it did not retry."""
        return self.failed + self.invalid + self.kept_failed + self.kept_gave_up

    def counts(self) -> dict[str, int]:
        names = ("seen", "already_done", "done", "copied", "reencoded", "adopted", "failed", "invalid", "kept_failed", "kept_gave_up", "no_mask",
                 "empty_mask", "orphan_masks", "requests", "retries", "rate_limited", "possibly_charged",
                 "resent_after_crash", "flagged", "elsewhere", "lease_lost")
        return {name: int(getattr(self, name)) for name in names}
