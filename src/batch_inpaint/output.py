"""Writing results: the output tree mirrors the input, and every file appears whole or not at all."""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
from pathlib import Path

import anyio

from .buckets import BucketPath, Location
from .errors import OutputError
from .pairing import Pair
from .hashing import fingerprint
from .pieces import Pieces
from .store import OutputRecord


#: errno values that say the whole disk is unusable, not just this one file.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
#: ... and the whole bucket: not there, or not this run's to write.
BUCKET_ERRNOS = frozenset({errno.ENOENT, errno.EACCES})


def output_path(out_dir: Location, rel: str) -> Location:
    """The absolute output path for ``rel``, refusing anything that would land outside ``out_dir``."""
    if isinstance(out_dir, BucketPath):
        if rel.startswith("/") or ".." in rel.split("/") or not rel.strip("/"):
            raise OutputError(f"output path {rel!r} would leave the output folder")
        return out_dir / rel
    root = out_dir.resolve()
    target = (root / rel).resolve()
    if target == root or root not in target.parents:
        raise OutputError(f"output path {rel!r} would leave the output folder")
    return target


class OutputWriter:
    """Write: one result to its place under the output folder, atomically, never over an input."""

    def __init__(self, out_dir: Location, fmt: str) -> None:
        self.out_dir = out_dir
        self.fmt = fmt

    def unusable(self, exc: OutputError) -> bool:
        """The error says no output can be written, not just this one: the run stops paying."""
        return exc.errno in DISK_ERRNOS or isinstance(self.out_dir, BucketPath) and exc.errno in BUCKET_ERRNOS

    async def write(self, pair: Pair, data: Pieces) -> OutputRecord:
        rel = pair.output_rel(self.fmt)
        path = output_path(self.out_dir, rel)
        if isinstance(path, BucketPath):
            if path in (pair.image, pair.mask):  # a --pairs list may name an object inside the output
                raise OutputError(f"output {rel} would overwrite an input")
            output_hash = await anyio.to_thread.run_sync(_put_and_hash, path, data)
            return OutputRecord(rel, output_hash, len(data))
        assert isinstance(path, Path)
        for source in (pair.image, pair.mask):
            if source is not None and os.path.exists(path) and _same_file(source, path):
                raise OutputError(f"output {rel} would overwrite an input")
        output_hash = await anyio.to_thread.run_sync(_write_and_hash, path, data)
        return OutputRecord(rel, output_hash, len(data))


def _same_file(source: Location, path: Path) -> bool:
    """Whether ``path`` is ``source``; an input gone since it was read (or a mask drawn from
    annotations, which is no file, or an object in a bucket) cannot be overwritten."""
    try:
        return isinstance(source, Path) and os.path.samefile(source, path)
    except OSError:
        return False


def _put_and_hash(target: BucketPath, data: Pieces) -> str:
    """One PUT: the object appears whole or not at all, and `done` is recorded only once it exists."""
    try:
        target.write_bytes(data.joined())
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror}", exc.errno) from None
    return fingerprint(data)


def _write_and_hash(path: Path, data: Pieces) -> str:
    """Write, then fingerprint, in one worker-thread call: off the event loop, which every request needs."""
    write_atomic(path, data)
    return fingerprint(data)


def write_atomic(path: Path, data: "bytes | Pieces", *, durable: bool = True) -> None:
    """Temp file beside the target, fsync, rename, fsync the folder: readers never see half a picture.

    ``durable`` False skips the fsyncs, for files that are made again when a crash loses them (the report's).
    """
    tmp_name: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = _open_part(path)
        with os.fdopen(fd, "wb") as fh:
            for part in Pieces.of(data):
                fh.write(part)  # a piece bigger than the buffer goes straight through, whole
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
            os.replace(tmp_name, path)  # under the part file's lock (`_open_part`)
            tmp_name = None
        if durable:
            _fsync_dir(path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}", exc.errno) from None
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass


def _open_part(path: Path) -> tuple[int, str]:
    """The temp file beside ``path``, locked. Its name is fixed per target, so a part file a killed run
    left is overwritten when the item is redone; while another process writes that one (the workers of
    a fleet share the folder, and their reports), a name of this writer's own. The fixed one is renamed
    into place under its lock, so a writer that locks it next checks it is still there."""
    fixed = str(path.with_name(f".{path.name}.part"))
    fd = os.open(fixed, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_ino == os.stat(fixed).st_ino:
            os.ftruncate(fd, 0)
            return fd, fixed
    except OSError:
        pass
    os.close(fd)
    own = str(path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.part"))
    return os.open(own, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), own


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

