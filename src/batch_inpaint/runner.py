"""Running a batch as a library call: checks, lock, manifest, engine, then `Batch.run`."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .engines.base import Engine
from .errors import ConfigError, ManifestError
from .manifest import Manifest
from .output import check_output_dir
from .pairing import TOOL_DIR
from .pipeline import Batch, Observer
from .runlock import RunLock
from .settings import Settings, resolve_api_key


def tool_dir(out_dir: Path) -> Path:
    return out_dir / TOOL_DIR


def manifest_path(settings: Settings) -> Path:
    assert settings.out_dir is not None
    return settings.manifest or tool_dir(settings.out_dir) / "manifest.sqlite3"


def check_inputs(settings: Settings) -> None:
    """Everything that can be wrong before a single file is read: raises ConfigError."""
    if settings.out_dir is None:
        raise ConfigError("no output folder (--out)")
    if settings.pairs_file is None:
        if settings.input_dir is None:
            raise ConfigError("no input folder")
        if not settings.input_dir.is_dir():
            raise ConfigError(f"{settings.input_dir}: input folder not found or not a folder")
    elif not settings.pairs_file.is_file():
        raise ConfigError(f"{settings.pairs_file}: pairs file not found")
    if settings.masks_dir is not None and not settings.masks_dir.is_dir():
        raise ConfigError(f"{settings.masks_dir}: mask folder not found or not a folder")
    if settings.mask_file is not None and not settings.mask_file.is_file():
        raise ConfigError(f"{settings.mask_file}: mask file not found")
    if settings.ca_bundle is not None and not settings.ca_bundle.is_file():
        raise ConfigError(f"{settings.ca_bundle}: CA bundle not found")
    check_output_dir(settings.out_dir, settings.input_dir)
    if settings.dilate:
        from .preflight import dilation_radius

        try:
            dilation_radius(settings.dilate, None)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def build_engine(settings: Settings) -> Engine:
    if settings.engine == "local":
        from .engines.local import LocalEngine

        return LocalEngine(method=settings.local_method, radius=settings.local_radius)
    from .engines.clipdrop import ClipdropEngine

    return ClipdropEngine(
        resolve_api_key(settings), url=settings.api_url, connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout, write_timeout=settings.write_timeout,
        deadline=settings.request_deadline, ca_bundle=settings.ca_bundle,
    )


async def run_batch(
    settings: Settings,
    *,
    engine: Engine | None = None,
    observer: Observer | None = None,
    on_start: Callable[[Batch], None] | None = None,
) -> Batch:
    """Run one batch to its end (or stop). Raises ConfigError, LockHeld or ManifestError before any request."""
    check_inputs(settings)
    assert settings.out_dir is not None
    if engine is None and settings.engine == "clipdrop":
        resolve_api_key(settings)  # a missing key is a usage error, found before the lock or any request
    lock = RunLock(tool_dir(settings.out_dir) / "run.lock")
    try:
        lock.acquire()
    except OSError as exc:
        raise ManifestError(f"{settings.out_dir}: cannot write to the output folder: {exc.strerror}") from None
    with lock:
        manifest = Manifest(manifest_path(settings))
        engine = engine or build_engine(settings)
        try:
            batch = Batch(settings, engine=engine, manifest=manifest, observer=observer)
            if on_start is not None:
                on_start(batch)
            await batch.run()
            return batch
        finally:
            await engine.aclose()
            manifest.close()
