"""What a re-run compares: the sizes and mtimes of a folder's pictures and masks, and the manifest's
brief rows of them.

Stat'ing and reading those rows are most of what a re-run over a million done items costs, and the
GIL keeps them on the core the walk and the compares need. So a large walk hands them to a helper
process (`Helper`), a slice of a folder at a time, ahead of when triage needs them. The helper is
this file run as a script, on the standard library alone. If it cannot start or dies, the run does
the work itself; it exits when its input closes, so it never outlives the run, and it is in a
session of its own, so a Ctrl-C reaches only the run.
"""

from __future__ import annotations

import os
import pickle
import sqlite3
import struct
import subprocess
import sys
import threading
from collections import deque
from concurrent.futures import Future
from typing import Any, BinaryIO, Sequence, Union

#: (image size, mtime, mask size, mtime); the mask's are None for an image without one.
Sigs = tuple[int, int, Union[int, None], Union[int, None]]
#: Sigs, or why a file could not be stat'ed.
Taken = Union[Sigs, str]
#: A slice's signatures, and the manifest's brief rows of its keys (None: not asked for).
Answer = tuple[list[Taken], Union[dict[str, tuple[Any, ...]], None]]
#: What `take` needs: folder, names, mask folder, mask names, the one mask for all, follow symlinks.
SliceRequest = tuple[str, list[str], str, list[Union[str, None]], Union[str, None], bool]

_STAT_BY_FD = os.stat in os.supports_dir_fd and os.stat in os.supports_follow_symlinks


class _Folder:
    """A directory whose files are stat'ed by name through one open descriptor (opened at the first
    stat), which spares the kernel a walk of the whole path for every file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._opened = False

    def stat(self, name: str, follow: bool) -> os.stat_result:
        if not self._opened:
            self._opened = True
            if _STAT_BY_FD:
                try:
                    self._fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
                except OSError:
                    pass  # stat'ed by path below, which gives the real error per file
        return os.stat(name if self._fd is not None else f"{self.path}/{name}", dir_fd=self._fd, follow_symlinks=follow)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def take(directory: str, names: list[str], mask_dir: str, mask_names: list[str | None], fixed: str | None,
         follow: bool) -> list[Taken]:
    """Each image's signature with its mask's (``mask_names[i]`` in ``mask_dir``, or the one ``fixed``
    mask file for all), or the reason one of the two cannot be stat'ed."""
    here = _Folder(directory)
    masks = here if mask_dir == directory else _Folder(mask_dir)
    taken: list[Taken] = []
    try:
        fixed_sig: tuple[int, int] | OSError | None = None
        if fixed is not None:
            try:
                st = os.stat(fixed)
                fixed_sig = (st.st_size, st.st_mtime_ns)
            except OSError as exc:
                fixed_sig = exc
        for name, mask_name in zip(names, mask_names):
            try:
                image = here.stat(name, follow)
                if isinstance(fixed_sig, OSError):
                    raise fixed_sig
                if fixed_sig is not None:
                    taken.append((image.st_size, image.st_mtime_ns, *fixed_sig))
                elif mask_name is not None:
                    mask = masks.stat(mask_name, True)
                    taken.append((image.st_size, image.st_mtime_ns, mask.st_size, mask.st_mtime_ns))
                else:
                    taken.append((image.st_size, image.st_mtime_ns, None, None))
            except OSError as exc:
                taken.append(exc.strerror or str(exc))
    finally:
        here.close()
        masks.close()
    return taken


def brief_rows(db: sqlite3.Connection, select: str, keys: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """The rows of these keys, by ``select`` (`SELECT key, ... FROM items WHERE`), each without its key.

    Keys come a folder at a time, so they are read as one range of the key index: a quarter cheaper
    than looking each up. Where other folders' keys lie in between, one by one."""
    found: dict[str, tuple[Any, ...]] = {}
    cursor = db.cursor()
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        limit = 2 * len(chunk) + 50
        rows = cursor.execute(f"{select} key BETWEEN ? AND ? LIMIT ?", (min(chunk), max(chunk), limit)).fetchall()
        if len(rows) == limit:
            rows = cursor.execute(f"{select} key IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        found.update((row[0], row[1:]) for row in rows)
    return found


class HelperGone(RuntimeError):
    """The helper process could not take a slice: the caller stats it itself."""


class Helper:
    """A helper process that stats each slice submitted (`take`) and reads its brief rows, in order,
    while the caller does other work. Submit from one thread at a time; answers come back on a thread
    of their own, so the helper never waits on a full pipe."""

    def __init__(self) -> None:
        # -I -S: the standard library only, no site-packages, no script folder on sys.path. Its stderr
        # goes nowhere: a helper cut off mid-answer is the run's to handle, not a traceback in its log.
        self._proc = subprocess.Popen([sys.executable, "-I", "-S", os.path.abspath(__file__)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        self._pending: deque[Future[Answer]] = deque()
        self._broken = False
        self._reader = threading.Thread(target=self._read, name="signatures", daemon=True)
        self._reader.start()

    @classmethod
    def start(cls) -> Helper | None:
        try:
            return cls()
        except (OSError, TypeError, ValueError):  # no interpreter to run it with, no process left
            return None

    @property
    def pid(self) -> int:
        return self._proc.pid

    def submit(self, request: SliceRequest, briefs: tuple[str, str] | None = None, rel: str = "") -> Future[Answer]:
        """`take` of ``request``; with ``briefs`` (a manifest's URI, the select: `SqliteStore.brief_source`),
        the rows of the slice's keys (``rel`` + each name) too."""
        future: Future[Answer] = Future()
        self._pending.append(future)
        if not self._broken:
            try:
                _send(self._proc.stdin, (request, briefs, rel))  # type: ignore[arg-type]
                return future
            except (OSError, ValueError):  # ValueError: its pipe was closed
                self._broken = True
        self._fail_pending()
        return future

    def close(self) -> None:
        """Let the helper finish what it is doing and exit; killed if it has not within a few seconds."""
        self._broken = True
        try:
            self._proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(timeout=5)
        self._proc.stdout.close()  # type: ignore[union-attr]
        self._fail_pending()

    def _read(self) -> None:
        try:
            while (message := _receive(self._proc.stdout)) is not None:  # type: ignore[arg-type]
                self._pending.popleft().set_result(message)  # type: ignore[arg-type]
        except Exception:  # a torn message, a closed pipe: whatever it was, the caller stats for itself
            pass
        self._broken = True
        self._fail_pending()

    def _fail_pending(self) -> None:
        while True:
            try:
                future = self._pending.popleft()
            except IndexError:
                return
            future.set_exception(HelperGone(f"the signatures helper (pid {self._proc.pid}) has gone"))


def _send(stream: BinaryIO, message: object) -> None:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack(">I", len(body)) + body)
    stream.flush()


def _receive(stream: BinaryIO) -> object | None:
    head = stream.read(4)
    if len(head) < 4:
        return None
    (length,) = struct.unpack(">I", head)
    body = stream.read(length)
    if len(body) < length:
        return None
    message: object = pickle.loads(body)
    return message


def _serve() -> None:
    """The helper: a slice in, its signatures and rows out, until its input closes."""
    manifests: dict[str, sqlite3.Connection] = {}  # by URI
    while (message := _receive(sys.stdin.buffer)) is not None:
        request: SliceRequest
        briefs: tuple[str, str] | None
        rel: str
        request, briefs, rel = message  # type: ignore[misc]
        taken = take(*request)
        rows = None
        if briefs is not None:
            uri, select = briefs
            if uri not in manifests:
                manifests[uri] = sqlite3.connect(uri, timeout=30, uri=True)
            rows = brief_rows(manifests[uri], select, [rel + name for name in request[1]])
        _send(sys.stdout.buffer, (taken, rows))


if __name__ == "__main__":
    _serve()
