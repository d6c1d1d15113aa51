"""Running a batch as a library call: checks, lock, store, engine and limiter, then `Batch.run`."""

from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Literal

import anyio

from .batch import Batch, Observer
from .buckets import BucketPath, require
from .control import RunControl
from .engines.base import Engine, clipdrop_shaping, local_shaping
from .errors import BatchInpaintError, ConfigError
from .limiter import Limiter
from .reports import summary_json
from .roles import check_roles
from .runlock import RunLock
from .settings import Settings, resolve_api_key
from .settle import Settle
from .stats import RunStats
from .store import SqliteStore, Store


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a run leaves a caller: how it ended, its counters, and where its record is."""

    exit_code: int
    stats: RunStats
    manifest: str
    stop_reason: str | None = None
    #: The HTML report's index, when this run wrote one (`htmlreport`).
    report: Path | None = None
    #: A pass of watch that changed nothing (what woke it was still being written): it tells no one.
    idle: bool = False


def check_inputs(settings: Settings) -> None:
    """Everything that can be wrong before a single file is read: raises ConfigError."""
    if settings.out_dir is None:
        raise ConfigError("no output folder (--out)")
    check_roles(settings)
    if settings.pairs_file is None:
        if settings.input_dir is None:
            raise ConfigError("no input folder")
        require(settings.input_dir, "input folder", folder=True)
    else:
        require(settings.pairs_file, "pairs file", folder=False)
    if settings.masks_dir is not None:
        require(settings.masks_dir, "mask folder", folder=True)
    if settings.mask_file is not None:
        require(settings.mask_file, "mask file", folder=False)
    if settings.metrics_file is not None and not settings.metrics_file.parent.is_dir():
        raise ConfigError(f"{settings.metrics_file}: the metrics file's folder does not exist")
    if settings.ca_bundle is not None and not settings.ca_bundle.is_file():
        raise ConfigError(f"{settings.ca_bundle}: CA bundle not found")
    if settings.masks_from is not None and isinstance(settings.input_dir, BucketPath):
        raise ConfigError(f"--masks-from takes a local INPUT, not {settings.input_dir}: copy the pictures, or list "
                          "them with --pairs")
    if settings.masks_from is not None:  # a missing file, not COCO, an unknown class: before the lock
        from .annotations import load

        load(settings.masks_from, classes=settings.classes, names_file=settings.yolo_names)
    if settings.dilate:
        from .preflight import dilation_radius

        try:
            dilation_radius(settings.dilate, None)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def build_engine(settings: Settings) -> Engine:
    """The engine ``settings.engine`` names; the Clipdrop one needs the key (a ConfigError without one)."""
    if settings.engine == "local":
        from .engines.local import LocalEngine

        return LocalEngine(method=settings.local_method, radius=settings.local_radius)
    from .engines.clipdrop import ClipdropEngine

    return ClipdropEngine(
        resolve_api_key(settings), url=settings.api_url, mode=settings.mode, connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout, write_timeout=settings.write_timeout,
        deadline=settings.request_deadline, ca_bundle=settings.ca_bundle,
    )


def engine_shaping(settings: Settings) -> dict[str, Any]:
    """The identity of the engine `build_engine` would build, without building it (no key needed)."""
    if settings.engine == "local":
        return local_shaping(settings.local_method, settings.local_radius)
    return clipdrop_shaping(settings.mode)


def engine_endpoint(settings: Settings) -> str:
    """Where the engine `build_engine` would build sends its requests (`Engine.endpoint`)."""
    return "local" if settings.engine == "local" else settings.api_url


async def run_batch(
    settings: Settings,
    *,
    engine: Engine | None = None,
    store: Store | None = None,
    limiter: Limiter | None = None,
    observer: Observer | None = None,
    on_start: Callable[[RunControl], None] | None = None,
) -> RunResult:
    """Run one batch to its end, or until ``RunControl.stop``. What is not given is built from the
    settings (and closed again): the manifest, the engine, the limiter. Raises ConfigError,
    LockHeld or ManifestError before any request."""
    check_inputs(settings)
    assert settings.out_dir is not None
    if settings.dry_run:  # never spend on settings that ask only for a plan
        raise ConfigError("these settings ask for a dry run: plan it (batch-inpaint plan, planning.print_plan) "
                          "instead of running it")
    async with held(settings, engine, store, limiter) as (engine, store, limiter):
        control = RunControl(settings.grace_seconds)
        if on_start is not None:
            on_start(control)
        return await run_pass(settings, engine, store, limiter, control, observer)


@asynccontextmanager
async def held(settings: Settings, engine: Engine | None = None, store: Store | None = None,
               limiter: Limiter | None = None) -> AsyncIterator[tuple[Engine, Store, Limiter]]:
    """The output folder's lock (not for a worker of a shared job), and the engine, store and limiter a
    run (or a watch) works through:
    what is not given is built from the settings, in the order that finds a usage error first, and
    closed again."""
    assert settings.out_dir is not None
    owned_engine = engine is None
    engine = engine or build_engine(settings)  # a missing key is a usage error, found before the lock
    if isinstance(settings.out_dir, BucketPath):  # refused credentials, a read-only role: before any request
        try:
            await anyio.to_thread.run_sync(settings.out_dir.check_writable)
        except OSError as exc:
            if owned_engine:
                await engine.aclose()
            raise ConfigError(f"{settings.out_dir}: the results cannot be written there: {exc.strerror} (nothing "
                              "was sent)") from None
    shared = settings.fleet_manifest is not None  # every worker of the job writes the output folder
    try:
        with nullcontext() if shared else RunLock(settings.lock_path):
            owned_limiter = limiter is None
            # first: a shared limiter that cannot be reached is a usage error, before the manifest
            limiter = limiter or await build_limiter(settings, engine)
            try:
                owned_store = store is None
                store = store or await open_store(settings)
                try:
                    yield engine, store, limiter
                finally:
                    if owned_store:
                        await store.aclose()
            finally:
                if owned_limiter:
                    await limiter.aclose()
    finally:
        if owned_engine:
            await engine.aclose()


async def open_store(settings: Settings, *, create: bool = True) -> Store:
    """The manifest the settings name: a Postgres job's (``--manifest postgresql://...``) or the SQLite file."""
    url = settings.fleet_manifest
    if url is None:
        return SqliteStore(settings.manifest_path, create=create)
    from .store.postgres import PostgresStore

    job = settings.job_name
    store = await PostgresStore.open(url, job, lease_seconds=settings.lease, create=create)
    if not create or isinstance(settings.out_dir, BucketPath):  # a URL names the job the same on every host
        return store
    try:
        from .jobfolder import mark_folder

        assert settings.out_dir is not None
        mark = mark_folder(settings.out_dir, job)  # made only by a worker that reached the job
        if mark.job != job and not settings.job:  # another worker, mounting the folder elsewhere, marked it first
            await store.aclose()
            store = await PostgresStore.open(url, mark.job, lease_seconds=settings.lease)
        elif mark.job != job:
            raise ConfigError(f"{settings.out_dir} holds the results of job {mark.job!r}, not {job!r}: give "
                              f"--job {mark.job!r}, or another output folder (nothing was sent)")
        await store.check_folder(mark.token)
    except BaseException:
        await store.aclose()
        raise
    return store


async def run_pass(settings: Settings, engine: Engine, store: Store, limiter: Limiter, control: RunControl,
                   observer: Observer | None, settle: Settle | None = None,
                   report: Literal["changed", "always", "never"] = "changed") -> RunResult:
    """One batch over the whole input, then its report (when it changed something, unless ``report``
    says otherwise): a run, or one pass of `watching.watch_batch`."""
    batch = Batch(settings, engine=engine, store=store, limiter=limiter, control=control, observer=observer,
                  settle=settle)
    await batch.run()
    stats = batch.stats
    written = None
    if report == "always" or report == "changed" and stats.settled:
        written = await leave_report(settings, store, stats)
    idle = settle is not None and not stats.settled and control.stop_reason is None
    result = RunResult(batch.exit_code, stats, store.location, control.stop_reason, written, idle)
    with anyio.CancelScope(shield=True):
        if not idle:
            await _notify(settings, result)
    stats.emit("run_ended", "info" if result.exit_code == 0 else "error", exit_code=result.exit_code,
               stop_reason=result.stop_reason, duration_seconds=round(time.monotonic() - stats.started, 3),
               report=None if written is None else str(written.absolute()),
               summary=json.loads(summary_json(stats, result.exit_code, result.stop_reason, written)))
    return result


async def _notify(settings: Settings, result: RunResult) -> None:
    """``--notify``: tell the webhook how the run ended; one that fails is a notice, never the run's failure."""
    from . import notify

    if settings.notify_url is None or not notify.wanted(settings.notify_on, result.exit_code):
        return
    assert settings.out_dir is not None
    stats = result.stats
    error = await notify.send(settings.notify_url, notify.body(
        stats, result.exit_code, result.stop_reason, settings.out_dir, report=result.report,
        duration=time.monotonic() - stats.started))
    stats.emit("notify", "info" if error is None else "warning", sent=error is None,
               to=settings.public()["notify_url"], error=error)
    if error is not None:
        stats.notice(f"the notification could not be sent: {error}")


async def leave_report(settings: Settings, store: Store, stats: RunStats) -> Path | None:
    """The report, unless ``--no-report``; a report that cannot be written is a note in ``stats``,
    never the run's failure."""
    from .htmlreport import write_report
    from .locations import report_dir

    if not settings.report:
        return None
    assert settings.out_dir is not None
    try:
        with anyio.CancelScope(shield=True):  # a stopping run still leaves the report of what it did
            written = await write_report(store, settings.out_dir, report_dir(settings.out_dir, settings.report_dir),
                                         make=0)
    except (OSError, BatchInpaintError) as exc:
        stats.notice(f"the report could not be written: {exc}")
        return None
    return written.index


async def build_limiter(settings: Settings, engine: Engine) -> Limiter:
    """The limiter ``settings.limiter`` names, for the key and endpoint ``engine`` sends to."""
    from .limiter.build import open_limiter

    try:
        key = resolve_api_key(settings)
    except ConfigError:  # an engine given by the caller that needs no key
        key = ""
    return await open_limiter(settings, api_key=key, endpoint=engine.endpoint)
