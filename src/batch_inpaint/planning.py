"""`batch-inpaint plan` (or `run --dry-run`): walk, decide and preflight with no request; say what it would cost."""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field

import anyio

from .errors import InvalidInput, NoManifest
from .exitcodes import ExitCode
from .pairing import Pair
from .preflight import PreflightOptions, prepare
from .roles import masks_inside_input
from .answers import Answers
from .engines.base import request_hash
from .runner import check_inputs, engine_endpoint, engine_shaping, open_store
from .settings import Settings, settings_hash
from .store import MemoryStore, Store
from .triage import GAVE_UP, Triage, walked_chunks


#: Items the manifest holds and a run would leave as they are, counted where a first plan counts them.
_SKIPPED_AS = {"no_mask": "no_mask", "empty_mask": "empty_mask", "failed": "kept_failed", "invalid": "kept_failed",
               GAVE_UP: "kept_failed"}


@dataclass
class Plan:
    outcome: Counter[str] = field(default_factory=Counter)
    reasons: list[tuple[str, str, str]] = field(default_factory=list)
    orphans: int = 0
    #: The distinct requests the run would pay for: identical pairs share one.
    requests: set[str] = field(default_factory=set)
    #: With --masks-from: objects and images of each class the run would send, and the pictures.
    by_class: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def credits(self) -> int:
        return len(self.requests)


def _check(pair: Pair, options: PreflightOptions) -> tuple[str, str, str]:
    """(kind, why, the payload's hash) for one due pair, in a worker thread."""
    try:
        prepared = prepare(pair, options)
    except InvalidInput as exc:
        return "invalid", str(exc), ""
    except Exception as exc:
        return "invalid", f"could not be prepared ({type(exc).__name__})", ""
    if prepared.empty_mask:
        return "empty_mask", "", ""
    if prepared.fixes:
        return "fix", "; ".join(prepared.fixes), prepared.payload_hash
    return "ready", "", prepared.payload_hash


async def plan(settings: Settings) -> Plan:
    """Reads the manifest, if there is one, and writes nothing (but the masks --save-masks asks for)."""
    check_inputs(settings)
    assert settings.out_dir is not None
    store = await _manifest_or_none(settings)
    shaping, endpoint = engine_shaping(settings), engine_endpoint(settings)
    triage = Triage(store, settings, settings_hash(settings, shaping), record=False)
    options = PreflightOptions.from_settings(settings, store.content_hash)
    answers = Answers(settings.out_dir, settings.output_format, keep=settings.keep_answers)
    result = Plan()
    sent: list[str] = []
    cpu = anyio.CapacityLimiter(os.cpu_count() or 2)

    async def paid_already(payload: str) -> str | None:
        """The request, or None if an answer to it was paid for already and can be read again."""
        request = request_hash(payload, shaping, endpoint)
        source = None if settings.force else await store.find_answer(request, None)
        return request if source is None or await answers.read(source) is None else None

    try:
        async for chunk in walked_chunks(settings, store=store):
            sorted_ = await triage.sort(chunk)
            result.orphans += len(sorted_.orphans)
            for status, count in sorted_.skipped.items():  # by what the manifest says of them
                result.outcome[_SKIPPED_AS.get(status, "already")] += count
            result.outcome["adopt"] += len(sorted_.adopted)
            result.outcome["no_mask"] += len(sorted_.no_mask)
            checked = [("invalid", pair.key, why, "") for pair, why in sorted_.invalid]
            checked += [("invalid", folder.rel, folder.reason, "") for folder in sorted_.unreadable]
            checked += await _check_all(sorted_.due, options, cpu)
            for kind, key, why, payload in checked:
                if payload:
                    request = await paid_already(payload)
                    if request is None:
                        kind, why = "reuse", ""
                    else:
                        result.requests.add(request)
                        sent.append(key)
                result.outcome[kind] += 1
                if why:
                    result.reasons.append((kind, key, why))
    finally:
        await store.aclose()
    if options.annotations is not None:
        result.by_class = options.annotations.census(sent)
    return result


async def _manifest_or_none(settings: Settings) -> Store:
    """The manifest, only read; an empty store where no run has made one yet."""
    if settings.fleet_manifest is None and not settings.manifest_path.is_file():
        return MemoryStore()
    try:
        return await open_store(settings, create=False)
    except NoManifest:
        return MemoryStore()


async def _check_all(pairs: list[Pair], options: PreflightOptions,
                     cpu: anyio.CapacityLimiter) -> list[tuple[str, str, str, str]]:
    """Preflight a chunk's due pairs on every core; the answers in the walk's order."""
    found: list[tuple[str, str, str, str]] = [("", "", "", "")] * len(pairs)

    async def check(i: int, pair: Pair) -> None:
        kind, why, payload = await anyio.to_thread.run_sync(_check, pair, options, limiter=cpu)
        found[i] = (kind, pair.key, why, payload)

    async with anyio.create_task_group() as tg:
        for i, pair in enumerate(pairs):
            tg.start_soon(check, i, pair)
    return found


def print_plan(settings: Settings) -> int:
    """Print what a run would do and cost; exits as the run would (1 when items are invalid or failed before)."""
    result = anyio.run(plan, settings)
    outcome = result.outcome
    inside = masks_inside_input(settings)
    if inside is not None:
        print(f"note: the masks folder {settings.masks_dir} is inside the input folder: its files are used as "
              "masks only, not as pictures to clean")
    print(f"ready to send: {outcome['ready']}")
    print(f"need a fix first: {outcome['fix']}")
    print(f"invalid: {outcome['invalid']}")
    print(f"failed or invalid in an earlier run (retried when their files change, or with --retry-failed): "
          f"{outcome['kept_failed']}")
    empty = "no object of the chosen classes" if settings.masks_from else "empty masks (nothing to remove)"
    print(f"without a mask: {outcome['no_mask']}; {empty}: {outcome['empty_mask']}")
    print(f"masks without an image: {result.orphans}")
    print(f"already done (skipped): {outcome['already']}")
    print(f"made again from answers already paid for (no request): {outcome['reuse']}")
    print(f"outputs already there, taken as done (no request; --force redoes them): {outcome['adopt']}")
    if settings.engine == "clipdrop":
        print(f"credits needed: {result.credits} (identical pairs are sent once)")
        print(f"time at {settings.rate:g}/min: about {duration(result.credits / settings.rate * 60)}")
    if settings.masks_from is not None:
        print("by class, among the pictures to send (a picture with objects of two classes is one credit):")
        for name, (objects, images) in result.by_class.items():
            print(f"  {name}: {objects} objects in {images} pictures" + (
                f", {images} credits" if settings.engine == "clipdrop" else ""))
        if not result.by_class:
            print("  none")
    for kind, key, why in result.reasons:
        print(f"  {kind}: {key}: {why}")
    return int(ExitCode.FAILED if outcome["invalid"] or outcome["kept_failed"] else ExitCode.OK)


def duration(seconds: float) -> str:
    """Rounded up, in the largest unit that keeps it readable: 40 s, 3 min, 2 h 05 min."""
    whole = math.ceil(seconds)
    if whole < 90:
        return f"{whole} s"
    minutes = math.ceil(whole / 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"
