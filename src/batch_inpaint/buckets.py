"""Data where it lives: pictures, masks and results in object storage (``s3://``, ``gs://``, ``az://``),
through fsspec (s3fs, gcsfs, adlfs: the extras ``[s3]``, ``[gcs]``, ``[azure]``).

A `BucketPath` stands where the tool takes a local `Path`, with the few things the tool does with one:
join, name, read, write whole, list. Every store error becomes an `OSError` whose ``strerror`` is the
store's reason in words (no such bucket, access denied, throttled), so what a run says of a file it says
of an object too. A store that still throttles or fails after its client's own retries is asked again
with backoff (`RETRY`); nothing here is a request that costs a credit, so a retry never costs one twice.

Credentials come the store's standard way (environment, config files, instance roles; for S3 also
``AWS_ENDPOINT_URL``). ``--storage-option KEY=VALUE`` passes options to fsspec (`configure`); their
values never appear in what the tool prints or records.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generator, Iterable, Iterator, NamedTuple, TypeVar, Union

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from .errors import ConfigError

_URL = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.IGNORECASE)
#: Protocols that are local files: given as a URL, they become a `Path`.
_LOCAL = ("file", "local")
#: The extra each store's fsspec implementation comes with.
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure"}
#: What a listing page holds at most, where the store lists in pages (S3: 1,000 keys a page).
PAGE = 1000

T = TypeVar("T")


def is_url(text: object) -> bool:
    """A store's URL (``s3://bucket/prefix``), not a local path."""
    if not isinstance(text, str):
        return False
    match = _URL.match(text)
    return match is not None and match.group(1).lower() not in _LOCAL


def location(text: str | Path) -> "Location":
    """A URL as a `BucketPath`, anything else as a `Path` (a ``file://`` URL as its path)."""
    if isinstance(text, Path):
        return text
    if is_url(text):
        return BucketPath(text)
    match = _URL.match(text)
    return Path(text[match.end():] if match else text).expanduser()


# --- the stores' file systems -------------------------------------------------------------------------

_options: dict[str, Any] = {}


def parse_options(pairs: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings as fsspec's keyword arguments: a dotted key makes a nested dict
    (``client_kwargs.region_name=eu-west-1``), a value that reads as JSON is taken as such (true, 3)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--storage-option {key or pair.split('=')[0]!r}: expected KEY=VALUE")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        *parents, leaf = key.split(".")
        node = options
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--storage-option {key}: {part} is given a value and options at once")
        node[leaf] = value
    return options


def configure(pairs: Iterable[str]) -> None:
    """The process's storage options, for every store it opens from now on."""
    global _options
    options = parse_options(pairs)
    if options != _options:
        _options = options
        _filesystem.cache_clear()


def forget() -> None:
    """Open the stores anew from now on (their environment changed: a test's server, say)."""
    _filesystem.cache_clear()
    try:
        from fsspec.spec import AbstractFileSystem
    except ImportError:
        return
    for cls in [AbstractFileSystem, *AbstractFileSystem.__subclasses__()]:
        cls.clear_instance_cache()


@functools.lru_cache(maxsize=None)
def _filesystem(protocol: str) -> Any:
    extra = EXTRAS.get(protocol, protocol)
    try:
        import fsspec  # comes with every store's extra

        return fsspec.filesystem(protocol, **_options)
    except ImportError:
        raise ConfigError(f"{protocol}:// needs its storage library: pip install 'batch-inpaint[{extra}]'") from None
    except ValueError as exc:  # fsspec knows no such protocol
        raise ConfigError(f"{protocol}://: {exc}") from None
    except TypeError as exc:  # a --storage-option the store does not take
        raise ConfigError(f"{protocol}://: a storage option was not accepted: {type(exc).__name__}") from None


# --- errors and retries ---------------------------------------------------------------------------------

_REFUSED = ("accessdenied", "access denied", "invalidaccesskeyid", "signaturedoesnotmatch", "forbidden")
_THROTTLED = ("slowdown", "slow down", "reduce your request rate", "throttl", "503", "too many requests")


def reason(exc: BaseException) -> tuple[int, str]:
    """(errno, the store's reason in words) for what a store raised."""
    lower = f"{type(exc).__name__} {exc}".lower()
    if "nocredentials" in lower or "unable to locate credentials" in lower:
        return errno.EACCES, "no credentials were found (environment, config file or instance role)"
    if isinstance(exc, PermissionError) or any(word in lower for word in _REFUSED):
        if any(word in lower for word in ("access key", "accesskey", "signature", "token", "credential")):
            return errno.EACCES, "access denied (the credentials were refused)"
        return errno.EACCES, "access denied"
    if isinstance(exc, FileNotFoundError) or "nosuchbucket" in lower or "nosuchkey" in lower:
        if "bucket" in lower:
            return errno.ENOENT, "no such bucket"
        return errno.ENOENT, "no such object"
    if any(word in lower for word in _THROTTLED) or getattr(exc, "errno", None) == errno.EBUSY:
        return errno.EBUSY, "the store is throttling requests (503 Slow Down)"
    if isinstance(exc, (TimeoutError, ConnectionError)) or "timeout" in lower or "connect" in lower:
        return errno.ETIMEDOUT, "the store could not be reached"
    if isinstance(exc, IsADirectoryError):
        return errno.EISDIR, "a folder, not an object"
    return getattr(exc, "errno", None) or errno.EIO, f"the store failed: {type(exc).__name__}"


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.EBUSY, errno.ETIMEDOUT, errno.EIO)


@dataclass(frozen=True)
class RetryPlan:
    """How often, and how patiently, a store call is made again: after the client's own retries, as an
    API 5xx is (full jitter, capped); ``sleep`` is the clock's, so tests run it on a fake one."""

    attempts: int = 5
    base: float = 1.0
    cap: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def call(self, fn: Callable[[], T]) -> T:
        retrying = Retrying(stop=stop_after_attempt(self.attempts), retry=retry_if_exception(_transient),
                            wait=wait_random_exponential(multiplier=self.base, max=self.cap), sleep=self.sleep,
                            reraise=True)
        return retrying(fn)


RETRY = RetryPlan()


def _store_call(url: str, fn: Callable[[], T], plan: RetryPlan | None = None) -> T:
    def once() -> T:
        try:
            return fn()
        except ConfigError:
            raise
        except Exception as exc:  # whatever the store's library raised: said as an OSError, no credential in it
            code, words = reason(exc)
            raise OSError(code, words, url) from None

    return (plan or RETRY).call(once)


# --- a place in a store ---------------------------------------------------------------------------------

class Listed(NamedTuple):
    """One entry of a listing: a file (its size and `tag`) or a folder (a prefix with keys under it)."""

    name: str
    folder: bool
    size: int = 0
    tag: int = 0


def tag(info: dict[str, Any]) -> int:
    """What stands for a file's mtime in its signature: a 63-bit hash of the store's ETag (or checksum,
    or last-modified time). An edited object gets a new one; the same bytes uploaded again keep theirs."""
    for key in ("ETag", "etag", "md5Hash", "content_md5", "crc32c", "LastModified", "last_modified", "updated",
                "mtime", "created"):
        value = info.get(key)
        if value:
            digest = hashlib.blake2b(str(value).strip('"').encode(), digest_size=8).digest()
            return int.from_bytes(digest, "big") >> 1
    return 0


class BucketPath:
    """A URL where the tool takes a path: ``s3://bucket/prefix/name.jpg``. Immutable; compares by URL."""

    __slots__ = ("url", "protocol", "_path")

    def __init__(self, url: str) -> None:
        match = _URL.match(url)
        if match is None:
            raise ValueError(f"not a store URL: {url!r}")
        self.protocol = match.group(1).lower()
        path = url[match.end():].strip("/")
        if not path:
            raise ConfigError(f"{url}: a store URL needs a bucket (s3://BUCKET/prefix)")
        self._path = path
        self.url = f"{self.protocol}://{path}"

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"BucketPath({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BucketPath) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __truediv__(self, rel: str | Path) -> BucketPath:
        rel = str(rel).strip("/")
        return BucketPath(f"{self.url}/{rel}") if rel else self

    @property
    def name(self) -> str:
        return self._path.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        stem, dot, ext = self.name.rpartition(".")
        return f".{ext}" if dot and stem else ""

    @property
    def parent(self) -> BucketPath:
        head = self._path.rpartition("/")[0]
        return BucketPath(f"{self.protocol}://{head}") if head else self

    @property
    def bucket(self) -> str:
        return self._path.split("/", 1)[0]

    def resolve(self) -> BucketPath:
        return self

    def absolute(self) -> BucketPath:
        return self

    def expanduser(self) -> BucketPath:
        return self

    def within(self, folder: BucketPath) -> bool:
        """This is ``folder`` or lies under it."""
        return self.url == folder.url or self.url.startswith(folder.url + "/")

    @property
    def fs(self) -> Any:
        return _filesystem(self.protocol)

    @property
    def path(self) -> str:
        """The store's own path (``bucket/key``), as fsspec takes it."""
        return self._path

    def read_bytes(self) -> bytes:
        data: bytes = _store_call(self.url, lambda: self.fs.cat_file(self._path))
        return data

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> None:
        """One PUT (a multipart upload past 100 MB, completed only when whole): the object appears whole
        or not at all, and exists once this returns."""
        extra: dict[str, str] = {}
        if self.protocol in ("s3", "s3a"):  # served with its type, so a browser shows it from a signed URL
            import mimetypes

            extra["ContentType"] = mimetypes.guess_type(self.name)[0] or "application/octet-stream"
        _store_call(self.url, lambda: self.fs.pipe_file(self._path, data, **extra))

    def check_writable(self) -> None:
        """Write and remove a small hidden object under this prefix: a missing bucket, refused credentials
        or a read-only role show before a credit is spent on a result that could not be kept."""
        import secrets

        probe = self / f".batch-inpaint-probe-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        try:
            probe.unlink()
        except OSError:
            pass  # may write but not delete: the outputs need only the first

    def unlink(self) -> None:
        _store_call(self.url, lambda: self.fs.rm_file(self._path))

    def info(self) -> dict[str, Any]:
        found: dict[str, Any] = _store_call(self.url, lambda: self.fs.info(self._path))
        return found

    def signature(self) -> tuple[int, int]:
        """(size, `tag`), as `pairing.FileSig` holds a file's (size, mtime)."""
        info = self.info()
        if info.get("type") == "directory":
            raise OSError(errno.EISDIR, "a folder, not an object", self.url)
        return int(info.get("size") or 0), tag(info)

    def is_file(self) -> bool:
        try:
            return self.info().get("type") != "directory"
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return False
            raise

    def is_dir(self) -> bool:
        """Something is stored under this prefix (a store has no empty folders). Raises for a bucket
        that is not there or cannot be read: the caller says which."""
        with contextlib.closing(self.pages(limit=1)) as listing:
            return bool(next(listing, None))

    def exists(self) -> bool:
        return self.is_file() or self.is_dir()

    def names(self) -> set[str]:
        """The names of the files right under this prefix (`triage.OutputIndex`)."""
        return {entry.name for page in self.pages() for entry in page if not entry.folder}

    def pages(self, limit: int | None = None) -> Generator[list[Listed], None, None]:
        """What lies right under this prefix, a page at a time in the store's (sorted) order, so a
        walk can start on the first page while the store lists the rest. Hidden names left out;
        ``limit``: a first page of about that many entries is enough (S3 lists no more)."""
        fs = self.fs
        if hasattr(fs, "_iterdir") and hasattr(fs, "loop"):  # s3fs: its pages, as they come
            yield from self._s3_pages(fs, limit)
            return
        entries = _store_call(self.url, lambda: fs.ls(self._path, detail=True))
        page = [e for e in (self._entry(info) for info in entries) if e is not None]
        page.sort()
        if page:
            yield page

    def _s3_pages(self, fs: Any, limit: int | None) -> Generator[list[Listed], None, None]:
        from fsspec.asyn import sync

        bucket, _, key = self._path.partition("/")
        items = fs._iterdir(bucket, prefix=f"{key}/" if key else "", max_items=limit)

        size = limit or PAGE

        async def page() -> list[Any]:
            got: list[Any] = []
            async for info in items:
                got.append(info)
                if len(got) >= size:
                    break
            return got

        try:
            while True:
                infos = _store_call(self.url, lambda: sync(fs.loop, page), RetryPlan(attempts=1))
                if not infos:
                    return
                yield [e for e in (self._entry(info) for info in infos) if e is not None]
                if len(infos) < size or limit is not None:
                    return
        finally:  # the listing's generator lives on the store's loop: closed there, if it still runs
            if fs.loop is not None and fs.loop.is_running():
                try:
                    sync(fs.loop, items.aclose, timeout=5)
                except Exception:
                    pass

    def _entry(self, info: dict[str, Any]) -> Listed | None:
        name = str(info.get("name") or info.get("Key") or "").rstrip("/").rsplit("/", 1)[-1]
        if not name or name.startswith("."):
            return None
        if info.get("type") == "directory":
            return Listed(name, True)
        return Listed(name, False, int(info.get("size") or 0), tag(info))


Location = Union[Path, BucketPath]


def local_pages(folder: Path) -> Iterator[list[Listed]]:
    """A local folder listed as a store's prefix is (`BucketPath.pages`), its files' mtimes as tags."""
    import os

    page: list[Listed] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):  # as the folder walk does by default
                    page.append(Listed(entry.name, True))
                elif entry.is_file():
                    st = entry.stat()
                    page.append(Listed(entry.name, False, st.st_size, st.st_mtime_ns))
            except OSError:
                continue
    page.sort()
    if page:
        yield page


def require(where: Location, what: str, *, folder: bool) -> None:
    """``where`` is there as a folder (for a bucket: a prefix with something under it) or a file, else a
    ConfigError naming it, and the store's reason when it could not be asked."""
    try:
        there = where.is_dir() if folder else where.is_file()
    except OSError as exc:
        raise ConfigError(f"{where}: {what} cannot be read: {exc.strerror}") from None
    if not there:
        raise ConfigError(f"{where}: {what} not found" + (" or not a folder" if folder else ""))


def pages(where: Location) -> Iterator[list[Listed]]:
    return where.pages() if isinstance(where, BucketPath) else local_pages(where)


def read_bytes(where: str) -> bytes:
    """A file's or an object's bytes, by the string a `pairing.Pair` holds."""
    return location(where).read_bytes()
