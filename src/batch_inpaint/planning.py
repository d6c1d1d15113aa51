"""`batch-inpaint plan` (or `run --dry-run`): walk, decide and preflight with no request; say what it would cost."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import anyio

from .errors import InvalidInput
from .pairing import Pair
from .preflight import PreflightOptions, prepare
from .roles import masks_inside_input
from .runner import check_inputs, engine_shaping
from .settings import Settings, settings_hash
from .store import MemoryStore, SqliteStore, Store
from .triage import Triage, walked_chunks


@dataclass
class Plan:
    outcome: Counter[str] = field(default_factory=Counter)
    reasons: list[tuple[str, str, str]] = field(default_factory=list)
    orphans: int = 0

    @property
    def credits(self) -> int:
        return self.outcome["ready"] + self.outcome["fix"]


def _check(pair: Pair, options: PreflightOptions) -> tuple[str, str]:
    try:
        prepared = prepare(pair, options)
    except InvalidInput as exc:
        return "invalid", str(exc)
    except Exception as exc:
        return "invalid", f"could not be prepared ({type(exc).__name__})"
    if prepared.empty_mask:
        return "empty_mask", ""
    return ("fix", "; ".join(prepared.fixes)) if prepared.fixes else ("ready", "")


async def plan(settings: Settings) -> Plan:
    """Reads the manifest, if there is one, and writes nothing."""
    check_inputs(settings)
    path = settings.manifest_path
    store: Store = SqliteStore(path, create=False) if path.is_file() else MemoryStore()
    triage = Triage(store, settings, settings_hash(settings, engine_shaping(settings)), record=False)
    options = PreflightOptions.from_settings(settings)
    result = Plan()
    cpu = anyio.CapacityLimiter(os.cpu_count() or 2)

    try:
        async for chunk in walked_chunks(settings):
            sorted_ = await triage.sort(chunk)
            result.orphans += len(sorted_.orphans)
            result.outcome["already done or kept"] += sum(sorted_.skipped.values())
            result.outcome["no_mask"] += len(sorted_.no_mask)
            checked = [("invalid", pair.key, why) for pair, why in sorted_.invalid]
            checked += await _check_all(sorted_.due, options, cpu)
            for kind, key, why in checked:
                result.outcome[kind] += 1
                if why:
                    result.reasons.append((kind, key, why))
    finally:
        await store.aclose()
    return result


async def _check_all(pairs: list[Pair], options: PreflightOptions, cpu: anyio.CapacityLimiter) -> list[tuple[str, str, str]]:
    """Preflight a chunk's due pairs on every core; the answers in the walk's order."""
    found: list[tuple[str, str, str]] = [("", "", "")] * len(pairs)

    async def check(i: int, pair: Pair) -> None:
        kind, why = await anyio.to_thread.run_sync(_check, pair, options, limiter=cpu)
        found[i] = (kind, pair.key, why)

    async with anyio.create_task_group() as tg:
        for i, pair in enumerate(pairs):
            tg.start_soon(check, i, pair)
    return found


def print_plan(settings: Settings) -> int:
    result = anyio.run(plan, settings)
    outcome = result.outcome
    inside = masks_inside_input(settings)
    if inside is not None:
        print(f"note: the masks folder {settings.masks_dir} is inside the input folder: its files are used as "
              "masks only, not as pictures to clean")
    print(f"ready to send: {outcome['ready']}")
    print(f"need a fix first: {outcome['fix']}")
    print(f"invalid: {outcome['invalid']}")
    print(f"without a mask: {outcome['no_mask']}; empty masks (nothing to remove): {outcome['empty_mask']}")
    print(f"masks without an image: {result.orphans}")
    print(f"already done (skipped): {outcome['already done or kept']}")
    if settings.engine == "clipdrop":
        print(f"credits needed: {result.credits} (at most; identical pairs are sent once)")
        print(f"time at {settings.rate:g}/min: about {result.credits / settings.rate:.1f} min")
    for kind, key, why in result.reasons:
        print(f"  {kind}: {key}: {why}")
    return 0
