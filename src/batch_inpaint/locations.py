"""Where the tool keeps its own files beside the outputs: one place for every path that names them."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

from .buckets import BucketPath, Location

if TYPE_CHECKING:
    from .settings import Settings

#: The tool's folder inside the output folder; the walk skips it (and every hidden name).
TOOL_DIR = ".batch-inpaint"


def tool_dir(out_dir: Location) -> Path:
    """Inside the output folder; for results in a bucket, a folder of the user's state folder named by
    the output's URL (a bucket has no place for a manifest that is written a row at a time, nor a lock)."""
    if isinstance(out_dir, BucketPath):
        return bucket_state_dir(out_dir)
    return out_dir / TOOL_DIR


def bucket_state_dir(out: BucketPath) -> Path:
    """``$XDG_STATE_HOME/batch-inpaint/buckets/<readable URL>-<hash>``: one per output URL."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", out.url)[:80]
    digest = hashlib.blake2b(out.url.encode(), digest_size=5).hexdigest()
    return state_dir() / "buckets" / f"{readable}-{digest}"


def manifest_path(out_dir: Location, override: Path | None = None) -> Path:
    """The SQLite manifest: ``--manifest`` when given, else inside the output folder."""
    return override or tool_dir(out_dir) / "manifest.sqlite3"


def lock_path(out_dir: Location) -> Path:
    return tool_dir(out_dir) / "run.lock"


def answers_dir(out_dir: Location) -> Path:
    """Answers paid for, kept so a change of output format needs no request (`answers`)."""
    return tool_dir(out_dir) / "answers"


def report_dir(out_dir: Location, override: Path | None = None) -> Path:
    """The report's folder (`htmlreport`): ``--report-dir`` when given, else inside the tool folder."""
    return override or tool_dir(out_dir) / "report"


def thumbs_dir(report: Path) -> Path:
    """Each result's thumbnail strip, inside the report's folder (`review.thumb_name` below it)."""
    return report / "thumbs"


def report_thumbs(settings: "Settings") -> Path:
    """Where a run puts each result's strip as it looks at the result: beside the report it will feed."""
    assert settings.out_dir is not None
    return thumbs_dir(report_dir(settings.out_dir, settings.report_dir))


def state_dir() -> Path:
    """The user's state folder for the tool: ``$XDG_STATE_HOME/batch-inpaint``, else ``~/.local/state/...``."""
    import os

    base = os.environ.get("XDG_STATE_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "state"
    return root / "batch-inpaint"


def limits_dir() -> Path:
    """Where the runs of one host share each key's schedule (`limiter.boards.FileBoard`)."""
    return state_dir() / "limits"
