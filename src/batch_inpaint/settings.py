"""Run settings: defaults, then a TOML file, then the environment, then flags (flags win)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from .buckets import BucketPath, Location, is_url, location
from .errors import ConfigError

import tomllib

DEFAULT_API_URL = "https://clipdrop-api.co/cleanup/v1"
ENGINES = ("clipdrop", "local")
MODES = ("fast", "quality")
OUTPUT_FORMATS = ("png", "jpg", "webp")
OVERSIZE = ("downscale", "crop", "fail")
LOCAL_METHODS = ("telea", "ns")
PROGRESS_MODES = ("auto", "bar", "lines", "none")
SUMMARY_FORMATS = ("text", "json")
LOG_FORMATS = ("text", "json")
NOTIFY_ON = ("failures", "always")
EXPORT_FORMATS = ("csv", "jsonl")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a run needs. Fields that change the output are listed in ``OUTPUT_SHAPING``."""

    #: A local path, or a store's URL (`buckets.BucketPath`).
    input_dir: Location | None = None
    out_dir: Location | None = None
    masks_dir: Location | None = None
    mask_file: Location | None = None
    pairs_file: Location | None = None
    #: ``KEY=VALUE`` options for the stores' fsspec file systems (`buckets.configure`); may hold secrets.
    storage_options: tuple[str, ...] = field(default=(), repr=False)
    mask_suffix: str = "_mask"
    #: Masks drawn from annotations instead of mask files: "coco:FILE.json" or "yolo:LABELS_DIR" (`annotations`).
    masks_from: str | None = None
    #: The classes whose objects are removed (names or ids; all when empty), and YOLO's class names.
    classes: tuple[str, ...] = ()
    yolo_names: Path | None = None
    #: Write each mask drawn from annotations here, for inspection.
    save_masks: Path | None = None
    recursive: bool = True
    follow_symlinks: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    engine: str = "clipdrop"
    api_url: str = DEFAULT_API_URL
    api_key: str | None = field(default=None, repr=False)
    api_key_file: Path | None = None
    ca_bundle: Path | None = None
    rate: float = 60.0
    #: The API's counting window: a 429 pauses until our own sends have left it (`limiter.pace`).
    rate_window: float = 60.0
    #: Who shares the key's rate limit: every run on this host ("host"), this run alone ("process"), or
    #: every run that names the same Postgres database (a postgresql:// URL). Unset: "host", or with a
    #: Postgres manifest, its database (`limit_sharing`).
    limiter: str | None = None
    concurrency: int | None = None
    mode: str = "fast"
    local_method: str = "telea"
    local_radius: int = 5
    connect_timeout: float = 10.0
    read_timeout: float = 90.0
    write_timeout: float = 60.0
    request_deadline: float = 180.0
    max_attempts: int = 8
    max_item_seconds: float = 900.0
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    #: No answer from the API for this long: the run stops with exit 7, items left pending.
    outage_seconds: float = 60.0
    #: Runs in a row that retry an item which ran out of attempts on transient errors (5xx, timeouts).
    retry_runs: int = 3
    #: The SQLite manifest's file, or a fleet's Postgres (a postgresql:// URL, `store.postgres`).
    manifest: Path | str | None = field(default=None, repr=False)
    #: The job, in a Postgres manifest: every worker with the same manifest and job shares the work.
    #: Unset: the output location.
    job: str | None = None
    #: Seconds a worker of a shared job holds an item without renewing its lease: after a crash, the
    #: longest its items wait for another worker.
    lease: float = 60.0
    retry_failed: bool = False
    force: bool = False
    #: Take every output already there as done, however old (by default only those newer than their inputs).
    adopt_existing: bool = False
    max_credits: float | None = None
    grace_seconds: float = 10.0
    inflight_mb: int = 400
    mask_threshold: int = 128
    dilate: str | None = None
    resize_mask: bool = False
    oversize: str = "downscale"
    copy_empty: bool = False
    output_format: str = "png"
    #: Keep the answers of lossy outputs, so a later format change costs no credit (`answers`).
    keep_answers: bool = True
    quality: int = 92
    dry_run: bool = False
    progress: str = "auto"
    #: The end-of-run summary: text on stderr, or also one JSON object on stdout ("json").
    summary: str = "text"
    #: A line for every item as it is settled, beside the progress display.
    verbose: bool = False
    #: Look at each result as it is written (a thumbnail strip, flags) and write the HTML report at the
    #: end of a run that did something (`htmlreport`); ``report_dir`` puts it elsewhere than OUT/.batch-inpaint/.
    report: bool = True
    report_dir: Path | None = None
    #: What goes to stderr: lines for people ("text") or one JSON object per event ("json", `events`).
    log_format: str = "text"
    #: Prometheus' text format, for node_exporter's textfile collector (`metrics`).
    metrics_file: Path | None = None
    #: Seconds between two writes of the metrics file while a run goes on.
    metrics_every: float = 15.0
    #: POST a short JSON summary here at the end of a run (`notify`); a webhook URL is a secret.
    notify_url: str | None = field(default=None, repr=False)
    notify_on: str = "failures"
    #: `watch`: a file counts once its size and mtime have not changed for this long.
    settle: float = 5.0
    #: `watch`: poll the folders instead of waiting for the file system's events (NFS, SMB, FUSE).
    poll: bool = False

    def __post_init__(self) -> None:
        validate(self)
        if self.storage_options or self.in_buckets:
            from .buckets import configure

            configure(self.storage_options)  # the settings that name a bucket set the process's options

    def __repr__(self) -> str:  # keeps the key and passwords out of any repr
        shown = ", ".join(f"{name}={value!r}" for name, value in self.public().items())
        return f"Settings({shown})"

    @property
    def workers(self) -> int:
        """Requests in flight at most: the full rate even at 30 s per picture. Memory is bounded
        separately, by ``inflight_mb`` (bytes in flight), so a generous count costs nothing."""
        if self.concurrency is not None:
            return self.concurrency
        if self.engine == "local":  # twice the cores: a core never idles while a worker writes its file
            return 2 * (os.cpu_count() or 2)
        return max(4, min(128, math.ceil(self.rate / 60.0 * 30.0) + 2))

    def public(self) -> dict[str, Any]:
        """The settings as a run records them: never the key, nor a password in a URL."""
        from .redaction import origin, redact_url

        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "api_key"}
        for name in ("limiter", "manifest"):
            value = values[name]
            if isinstance(value, str) and "://" in value:
                values[name] = redact_url(value)
        if self.notify_url is not None:  # a webhook's path is its secret: only where it goes
            values["notify_url"] = origin(self.notify_url)
        values["storage_options"] = [f"{option.partition('=')[0]}=***" for option in self.storage_options]
        return {k: (str(v) if isinstance(v, (Path, BucketPath)) else v) for k, v in values.items()}

    @property
    def mask_dilate(self) -> str | None:
        """--dilate, or with annotations 15% of each object's size, the provider's advice for masks made
        automatically."""
        if self.dilate is None and self.masks_from is not None:
            from .annotations import DEFAULT_DILATE

            return DEFAULT_DILATE
        return self.dilate

    @property
    def in_buckets(self) -> bool:
        """Any of the input, masks, mask, pairs list or output is a bucket's URL."""
        return any(isinstance(getattr(self, name), BucketPath) for name in LOCATION_FIELDS)

    @property
    def remote_out(self) -> bool:
        """The results go to a store: the tool's own files live in the user's state folder (`locations`)."""
        return isinstance(self.out_dir, BucketPath)

    @property
    def lock_path(self) -> Path:
        """One run at a time: the lock beside the output's manifest. For a bucket output with a manifest
        named by --manifest, beside that file, so hosts sharing it exclude each other."""
        from .locations import lock_path

        if self.out_dir is None:
            raise ConfigError("no output folder (--out)")
        if self.remote_out and isinstance(self.manifest, Path):
            return self.manifest.with_name(f"{self.manifest.name}.lock")
        return lock_path(self.out_dir)

    @property
    def manifest_path(self) -> Path:
        """The SQLite manifest (`fleet_manifest` says when it is Postgres instead)."""
        from .locations import manifest_path

        if self.out_dir is None:
            raise ConfigError("no output folder (--out)")
        if isinstance(self.manifest, str):
            raise ConfigError("the manifest is a Postgres database, not a file")
        return manifest_path(self.out_dir, self.manifest)

    @property
    def fleet_manifest(self) -> str | None:
        """The Postgres manifest's URL, if the manifest is one."""
        return self.manifest if isinstance(self.manifest, str) else None

    @property
    def job_name(self) -> str:
        """``--job``; else the job the output folder holds (`jobfolder`), else a new one named by it."""
        from .jobfolder import read_mark
        from .store.postgres import default_job

        if self.job:
            return self.job
        if self.out_dir is None:
            raise ConfigError("no output folder (--out)")
        if isinstance(self.out_dir, BucketPath):  # the same URL on every host: the job's name as it is
            return default_job(str(self.out_dir))
        mark = read_mark(self.out_dir)
        return mark.job if mark is not None else default_job(str(self.out_dir))

    @property
    def limit_sharing(self) -> str:
        """``limiter``; unset, the manifest's Postgres or else "host"."""
        return self.limiter or self.fleet_manifest or "host"

    def output_shaping(self) -> dict[str, Any]:
        """The settings an output depends on, besides the engine's own (`Engine.shaping`): a change
        makes done items due again."""
        shaping: dict[str, Any] = {
            "threshold": self.mask_threshold,
            "dilate": self.mask_dilate,
            "resize_mask": self.resize_mask,
            "oversize": self.oversize,
            "format": [self.output_format, self.quality if self.output_format != "png" else None],
        }
        return shaping


def settings_hash(settings: Settings, engine_shaping: Mapping[str, Any]) -> str:
    """The hash recorded with every item: its settings and its engine's identity. A change makes it due."""
    import hashlib
    import json

    text = json.dumps({**settings.output_shaping(), **engine_shaping}, sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


_PATH_FIELDS = {f.name for f in fields(Settings) if "Path" in str(f.type) or "Location" in str(f.type)}
#: Settings that take a store's URL as well as a path.
LOCATION_FIELDS = {f.name for f in fields(Settings) if "Location" in str(f.type)}
#: Config keys that are an option's name where the setting's name differs (`--out` sets ``out_dir``);
#: the settings' own names are accepted too.
OPTION_KEYS = {"input": "input_dir", "out": "out_dir", "masks": "masks_dir", "mask": "mask_file",
               "pairs": "pairs_file", "threshold": "mask_threshold", "notify": "notify_url"}
_FIELD_TYPES = {f.name: str(f.type) for f in fields(Settings)}
_NOT_IN_FILES = {"api_key"}  # a key in a config file would end up in backups and repos


def _coerce(name: str, value: Any, source: str, *, key: str | None = None, base: Path | None = None) -> Any:
    """``value`` as the setting's type; a TOML value must have that type already (no 2.7 for a whole
    number, no true for a number), a string from the environment is parsed. Relative paths in a file
    are relative to ``base``, the file's folder."""
    kind = _FIELD_TYPES[name]
    where = f"{source}: key '{key or name}'"
    if name == "manifest" and _is_url(value):
        return value
    if name in _PATH_FIELDS:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a path string")
        if name in LOCATION_FIELDS and is_url(value):
            return location(value)
        path = Path(value).expanduser()
        return base / path if base is not None and not path.is_absolute() else path
    if kind.startswith("bool"):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no"):
            return value.lower() in ("1", "true", "yes")
        raise ConfigError(f"{where} must be true or false")
    if kind.startswith("int"):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value)
        raise ConfigError(f"{where} must be a whole number, not {value!r}")
    if kind.startswith("float"):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where} must be a number, not {value!r}")
    if kind.startswith("tuple"):
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(f"{where} must be a list of strings")
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string")
    return value


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and "://" in value


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML config. Keys use dashes or underscores; an optional [batch-inpaint] table is unwrapped."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if isinstance(data.get("batch-inpaint"), dict):
        data = data["batch-inpaint"]
    values: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = raw_key.replace("-", "_")
        key = OPTION_KEYS.get(key, key)
        if key not in _FIELD_TYPES or key in _NOT_IN_FILES:
            hint = " (put the key in CLIPDROP_API_KEY or api-key-file)" if key == "api_key" else ""
            raise ConfigError(f"{path}: unknown key '{raw_key}'{hint}")
        values[key] = _coerce(key, value, str(path), key=raw_key, base=path.parent)
        if key == "masks_from" and isinstance(values[key], str):  # kind:PATH, the path as paths here are
            kind, _, where = values[key].partition(":")
            if where and not Path(where).expanduser().is_absolute():
                values[key] = f"{kind}:{path.parent / Path(where).expanduser()}"
    _check_alone(values, str(path))
    return values


def _check_alone(values: dict[str, Any], source: str) -> None:
    """Range checks on the values of one source, so an error names the file (or the environment)."""
    try:
        Settings(**values)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


_ENV = {
    "CLIPDROP_API_KEY": "api_key",
    "CLIPDROP_API_KEY_FILE": "api_key_file",
    "CLIPDROP_API_URL": "api_url",
    "BATCH_INPAINT_RATE": "rate",
    "BATCH_INPAINT_CONCURRENCY": "concurrency",
    "BATCH_INPAINT_ENGINE": "engine",
    "BATCH_INPAINT_CA_BUNDLE": "ca_bundle",
    "BATCH_INPAINT_LIMITER": "limiter",
    "BATCH_INPAINT_LOG_FORMAT": "log_format",
    "BATCH_INPAINT_METRICS_FILE": "metrics_file",
    "BATCH_INPAINT_NOTIFY_URL": "notify_url",
    "BATCH_INPAINT_MANIFEST": "manifest",
    "BATCH_INPAINT_JOB": "job",
}


def from_environment(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for var, name in _ENV.items():
        if env.get(var):
            values[name] = env[var] if name == "api_key" else _coerce(name, env[var], f"environment {var}")
            _check_alone({name: values[name]}, f"environment {var}")
    return values


def build_settings(
    flags: Mapping[str, Any],
    *,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Merge defaults < config file < environment < flags, then validate."""
    merged: dict[str, Any] = {}
    if config_file is not None:
        merged.update(load_config_file(config_file))
    merged.update(from_environment(os.environ if env is None else env))
    for name, value in flags.items():
        if value is None:
            continue
        if name not in _FIELD_TYPES:
            raise ConfigError(f"unknown setting '{name}'")
        path = name in _PATH_FIELDS and isinstance(value, str) and not (name == "manifest" and _is_url(value))
        if path and name in LOCATION_FIELDS:
            merged[name] = location(value)
        else:
            merged[name] = Path(value).expanduser() if path else value
    return Settings(**merged)


def validate(s: Settings) -> None:
    """Raises ConfigError for the first setting out of range; `Settings` runs it when built."""
    from .pgconn import is_postgres_url

    def check(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    check(s.engine in ENGINES, f"engine must be one of {', '.join(ENGINES)}, not {s.engine!r}")
    check(s.mode in MODES, f"mode must be one of {', '.join(MODES)}, not {s.mode!r}")
    check(s.output_format in OUTPUT_FORMATS, f"output format must be one of {', '.join(OUTPUT_FORMATS)}")
    check(s.oversize in OVERSIZE, f"oversize must be one of {', '.join(OVERSIZE)}")
    check(s.local_method in LOCAL_METHODS, f"local method must be one of {', '.join(LOCAL_METHODS)}")
    check(s.progress in PROGRESS_MODES, f"progress must be one of {', '.join(PROGRESS_MODES)}")
    check(s.summary in SUMMARY_FORMATS, f"summary must be one of {', '.join(SUMMARY_FORMATS)}")
    check(s.log_format in LOG_FORMATS, f"log format must be one of {', '.join(LOG_FORMATS)}, not {s.log_format!r}")
    check(s.notify_on in NOTIFY_ON, f"notify-on must be one of {', '.join(NOTIFY_ON)}, not {s.notify_on!r}")
    check(s.notify_url is None or s.notify_url.startswith(("https://", "http://")),
          "notify url must start with https:// or http://")
    check(0 <= s.settle < math.inf, "settle must be a number of seconds, 0 or more")
    check(0 < s.metrics_every < math.inf, "metrics-every must be a positive number of seconds")
    check(s.masks_from is None or s.masks_from.startswith(("coco:", "yolo:")),
          "masks-from must be coco:FILE.json or yolo:LABELS_DIR")
    check(0 < s.rate < math.inf, "rate must be a positive number of requests per minute")
    check(0 < s.rate_window < math.inf, "rate window must be a positive number of seconds")
    check(s.limiter is None or s.limiter in ("host", "process") or is_postgres_url(s.limiter),
          "limiter must be host, process or a postgresql:// URL")
    check(not isinstance(s.manifest, str) or is_postgres_url(s.manifest),
          "a manifest URL must be postgresql://... (or a file's path)")
    check(s.job is None or bool(s.job.strip()), "job cannot be empty")
    check(0 < s.lease < math.inf, "lease must be a positive number of seconds")
    check(not (s.force and isinstance(s.manifest, str)),
          "--force cannot be used with a Postgres manifest: each worker's walk would redo what the others had "
          "just done; start a new job instead (--job NAME)")
    check(s.concurrency is None or s.concurrency >= 1, "concurrency must be at least 1")
    check(1 <= s.quality <= 100, "quality must be between 1 and 100")
    check(s.inflight_mb >= 1, "inflight-mb must be at least 1")
    check(0 < s.mask_threshold < 256, "mask threshold must be between 1 and 255")
    check(s.max_attempts >= 1, "max attempts must be at least 1")
    check(s.outage_seconds > 0, "outage seconds must be positive")
    check(s.retry_runs >= 0, "retry runs cannot be negative")
    check(s.backoff_base >= 0 and s.backoff_cap >= 0, "backoff times cannot be negative")
    check(s.request_deadline > 0 and s.read_timeout > 0, "timeouts must be positive")
    check(s.max_credits is None or s.max_credits >= 0, "max credits cannot be negative")
    check(s.api_url.startswith(("https://", "http://")), "api url must start with https:// or http://")


def resolve_api_key(s: Settings) -> str:
    """The key from the environment or a key file; a ConfigError (naming no key) if there is none."""
    if s.api_key:
        return s.api_key.strip()
    if s.api_key_file is not None:
        try:
            key = s.api_key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{s.api_key_file}: cannot read the key file: {exc.strerror}") from None
        if key:
            return key
        raise ConfigError(f"{s.api_key_file}: the key file is empty")
    raise ConfigError(
        "no API key: set CLIPDROP_API_KEY or CLIPDROP_API_KEY_FILE (or --api-key-file), "
        "or use --engine local"
    )
