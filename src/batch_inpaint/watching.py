"""Watch: stay running and clean pairs as they arrive (``batch-inpaint watch``).

One pass is one run over the input (same manifest, lock, limiter and exit codes as `run`), so a
pass sends only what is new or changed, and a mask that arrives after its image makes that image
due. A pass starts at once, then whenever the file system reports a change (watchfiles: inotify,
or polling where a file system has no events), and again when a file still being written may have
settled (`settle`). The lock is held for the whole watch, so a `run` on the same output is refused
(exit 5) while it lasts.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Awaitable, Callable, Literal

import anyio

from .batch import Observer
from .control import RunControl
from .engines.base import Engine
from .errors import ConfigError
from .limiter import Limiter
from .buckets import BucketPath
from .runner import RunResult, check_inputs, held, leave_report, run_pass
from .settings import Settings
from .settle import Settle
from .store import Store

#: File systems whose changes made on other machines raise no local event: watched by polling.
POLLED = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre",
                    "gpfs", "beegfs", "davfs", "virtiofs"})
#: Polling's period, where events are not to be had.
POLL_MS = 2000
#: A watch writes the report at most this often (and when it stops): over 100,000 items the report
#: takes 4 s to write, four times a pass that cleans one new picture (benchmarks/watch.py).
REPORT_EVERY = 60.0


class Watch:
    """Handed to `watch_batch`'s ``on_start``: `stop` ends the watch as `RunControl.stop` ends a run
    (a pass under way finishes its requests in flight; a second stop stops at once)."""

    def __init__(self) -> None:
        self.signal_exit: int | None = None
        self.stopping = False
        self.passes = 0
        self.polling = False
        #: Said once about the watch (it fell back to polling), for the caller to show.
        self.notes: list[str] = []
        self._control: RunControl | None = None
        self._changed = anyio.Event()

    def stop(self, exit_code: int | None = None) -> None:
        if exit_code is not None and self.signal_exit is None:
            self.signal_exit = exit_code
        self.stopping = True
        self._changed.set()
        if self._control is not None:
            self._control.stop(exit_code)

    def changed(self) -> None:
        self._changed.set()

    async def wait(self, timeout: float | None) -> None:
        """Until a change, a stop, or ``timeout`` seconds; changes during the next pass count for the one after."""
        with anyio.move_on_after(timeout):
            await self._changed.wait()
        if not self.stopping:
            self._changed = anyio.Event()


def watched_folders(settings: Settings) -> list[Path]:
    folders = [settings.input_dir] if isinstance(settings.input_dir, Path) else []
    if isinstance(settings.masks_dir, Path):
        folders.append(settings.masks_dir)
    if settings.masks_from is not None:  # YOLO's labels, or the folder of the COCO file
        from .annotations import parse_source

        kind, path = parse_source(settings.masks_from)
        folders.append(path if kind == "yolo" else path.parent)
    resolved = sorted({folder.resolve() for folder in folders})
    return [f for f in resolved if not any(other in f.parents for other in resolved)]


def needs_polling(folder: Path, mounts: str = "/proc/self/mounts") -> bool:
    """Whether ``folder`` lies on a file system whose remote changes raise no event here (NFS, SMB, FUSE)."""
    try:
        lines = Path(mounts).read_text().splitlines()
    except OSError:
        return False
    best, fstype = "", ""
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        if (str(folder) == point or str(folder).startswith(point.rstrip("/") + "/")) and len(point) > len(best):
            best, fstype = point, fields[2]
    return fstype in POLLED or fstype.startswith("fuse.")


async def watch_batch(
    settings: Settings,
    *,
    engine: Engine | None = None,
    observer: Observer | None = None,
    on_start: Callable[[Watch], None] | None = None,
    on_pass: Callable[[RunResult], Awaitable[None]] | None = None,
) -> int:
    """Watch until `Watch.stop` or a pass that cannot go on (a rejected key, no credits, a full disk,
    an outage): returns the exit code `run` would have (130/143 after a signal)."""
    if settings.input_dir is None or settings.pairs_file is not None:
        raise ConfigError("watch takes an input folder (a pairs file names its pictures once and for all)")
    for where in (settings.input_dir, settings.masks_dir, settings.mask_file):
        if isinstance(where, BucketPath):
            raise ConfigError(f"{where}: watch needs local input folders, which tell it what changes; a bucket "
                              "tells nothing. Run `batch-inpaint run` on a schedule instead (docs/scheduling.md): each run "
                              "sends only what is new or changed")
    check_inputs(settings)
    assert settings.out_dir is not None
    watch = Watch()
    folders = watched_folders(settings)
    watch.polling = settings.poll or any(needs_polling(folder) for folder in folders)
    async with held(settings, engine) as (engine, store, limiter):
        if on_start is not None:
            on_start(watch)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_follow, folders, watch, settings.recursive)
            code = await _passes(settings, engine, store, limiter, observer, watch, on_pass)
            tg.cancel_scope.cancel()
        return code


async def _passes(settings: Settings, engine: Engine, store: Store, limiter: Limiter, observer: Observer | None,
                  watch: Watch, on_pass: Callable[[RunResult], Awaitable[None]] | None) -> int:
    settle = Settle(settings.settle)
    last_report, report_due = -math.inf, False
    while True:
        control = watch._control = RunControl(settings.grace_seconds)
        if watch.stopping:  # a signal before the pass began
            control.stop(watch.signal_exit)
        settle.new_pass()
        started = time.monotonic()
        report: Literal["changed", "always", "never"] = "never"
        if started - last_report >= REPORT_EVERY:
            report = "always" if report_due else "changed"
        result = await run_pass(settings, engine, store, limiter, control, observer, settle, report)
        watch._control = None
        watch.passes += 1
        if result.report is not None:
            last_report, report_due = started, False
        elif result.stats.settled and settings.report:
            report_due = True
        if on_pass is not None:
            with anyio.CancelScope(shield=True):
                await on_pass(result)
        if not (watch.stopping or control.stop_error is not None):
            timeout = settle.next_check()
            if report_due:
                until = max(0.0, last_report + REPORT_EVERY - time.monotonic())
                timeout = until if timeout is None else min(timeout, until)
            await watch.wait(timeout)
        if watch.stopping or control.stop_error is not None:
            if report_due:  # what the last passes did is in the report the watch leaves
                with anyio.CancelScope(shield=True):
                    await leave_report(settings, store, result.stats)
            return result.exit_code if watch.signal_exit is None else watch.signal_exit


async def _follow(folders: list[Path], watch: Watch, recursive: bool) -> None:
    """Tell the watch of every change under ``folders``; events where the file system has them, else
    polling, and polling too if the events cannot be had (inotify's watch limit, say)."""
    from watchfiles import awatch

    stop = anyio.Event()
    try:
        while True:
            try:
                async for _ in awatch(*folders, stop_event=stop, force_polling=watch.polling, poll_delay_ms=POLL_MS,
                                      recursive=recursive, debounce=500, step=50):
                    watch.changed()
                return
            except (OSError, RuntimeError) as exc:
                if watch.polling:
                    raise
                watch.polling = True
                watch.notes.append(f"file system events cannot be had ({exc}): polling every {POLL_MS / 1000:g} s")
    finally:
        stop.set()
