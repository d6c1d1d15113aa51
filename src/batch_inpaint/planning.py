"""`batch-inpaint plan` (or `run --dry-run`): walk and preflight with no request, and say what it would cost."""

from __future__ import annotations

import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from .errors import InvalidInput
from .manifest import Manifest
from .pairing import OrphanMask, Pair, pairs_for
from .pipeline import settings_hash
from .preflight import PreflightOptions, prepare
from .resume import Decision, OutputIndex, decide
from .runner import check_inputs, manifest_path
from .settings import Settings


def _check(pair: Pair, options: PreflightOptions) -> tuple[str, str]:
    if pair.problem:
        return "invalid", pair.problem
    if pair.mask is None:
        return "no_mask", ""
    try:
        prepared = prepare(pair, options)
    except InvalidInput as exc:
        return "invalid", str(exc)
    except Exception as exc:
        return "invalid", f"could not be prepared ({type(exc).__name__})"
    if prepared.empty_mask:
        return "empty_mask", ""
    return ("fix", "; ".join(prepared.fixes)) if prepared.fixes else ("ready", "")


def plan(settings: Settings) -> dict[str, object]:
    check_inputs(settings)
    options = PreflightOptions.from_settings(settings)
    path = manifest_path(settings)
    manifest = Manifest(path) if path.is_file() else None
    shaping = settings_hash(settings)
    outcome: Counter[str] = Counter()
    reasons: list[tuple[str, str, str]] = []
    todo: list[Pair] = []
    orphans = 0
    assert settings.out_dir is not None
    outputs = OutputIndex(settings.out_dir)
    for item in pairs_for(settings):
        if isinstance(item, OrphanMask):
            orphans += 1
            continue
        row = manifest.lookup([item.key]).get(item.key) if manifest else None
        if decide(item, row, settings_hash=shaping, outputs=outputs, retry_failed=settings.retry_failed,
                  force=settings.force) is Decision.SKIP:
            outcome["already done or kept"] += 1
            continue
        todo.append(item)
    with ThreadPoolExecutor() as pool:
        for pair, (kind, why) in zip(todo, pool.map(lambda p: _check(p, options), todo)):
            outcome[kind] += 1
            if why:
                reasons.append((kind, pair.key, why))
    if manifest:
        manifest.close()
    return {"outcome": outcome, "reasons": reasons, "orphans": orphans}


def print_plan(settings: Settings) -> int:
    result = plan(settings)
    outcome: Counter[str] = result["outcome"]  # type: ignore[assignment]
    credits = outcome["ready"] + outcome["fix"]
    minutes = credits / settings.rate if settings.engine == "clipdrop" else 0.0
    out = sys.stdout
    print(f"ready to send: {outcome['ready']}", file=out)
    print(f"need a fix first: {outcome['fix']}", file=out)
    print(f"invalid: {outcome['invalid']}", file=out)
    print(f"without a mask: {outcome['no_mask']}; empty masks (nothing to remove): {outcome['empty_mask']}", file=out)
    print(f"masks without an image: {result['orphans']}", file=out)
    print(f"already done (skipped): {outcome['already done or kept']}", file=out)
    if settings.engine == "clipdrop":
        print(f"credits needed: {credits} (at most; identical pairs are sent once)", file=out)
        print(f"time at {settings.rate:g}/min: about {minutes:.1f} min", file=out)
    for kind, key, why in result["reasons"]:  # type: ignore[attr-defined]
        print(f"  {kind}: {key}: {why}", file=out)
    return 0
