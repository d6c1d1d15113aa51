"""A fleet's output folder names its job (``.batch-inpaint/job``), so the workers of one job agree on it
wherever their hosts mount the folder, and a worker whose folder is not the job's is stopped before it
sends anything: a pod with a disk of its own where the shared volume should be, or a mistyped ``--job``
on a folder that holds another job's results (both would pay again for pictures already done).
`runner.open_store` makes the mark and checks it against the job."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, ManifestError
from .locations import tool_dir

MARK_NAME = "job"


@dataclass(frozen=True, slots=True)
class JobMark:
    job: str
    #: This folder's own identity: the job records the first one it sees, and refuses any other.
    token: str


def mark_path(out_dir: Path) -> Path:
    return tool_dir(out_dir) / MARK_NAME


def read_mark(out_dir: Path) -> JobMark | None:
    path = mark_path(out_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return JobMark(str(data["job"]), str(data["token"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a job mark batch-inpaint can read ({exc}); delete it only if no job "
                          "of a fleet writes to this folder") from None


def mark_folder(out_dir: Path, job: str) -> JobMark:
    """The folder's mark; made for ``job`` if it has none. Of workers starting at once, the first to link
    its mark into place wins and the others read it."""
    found = read_mark(out_dir)
    if found is not None:
        return found
    path = mark_path(out_dir)
    made = JobMark(job, secrets.token_hex(16))
    part = path.with_name(f".{MARK_NAME}.{os.getpid()}-{secrets.token_hex(4)}.part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        part.write_text(json.dumps({"job": made.job, "token": made.token}), encoding="utf-8")
        os.link(part, path)  # fails if another worker's mark came first
        return made
    except FileExistsError:
        found = read_mark(out_dir)
        assert found is not None
        return found
    except OSError as exc:
        raise ManifestError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        part.unlink(missing_ok=True)
