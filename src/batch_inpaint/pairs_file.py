"""An explicit list of pairs (``--pairs``): a CSV with a header ``image,mask[,output]`` or JSON lines.

Paths are relative to the list's folder; an output path may not leave the output folder. The list, and
any of its images and masks, may be in a bucket (a URL, or a path relative to a list that is).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import PurePosixPath
from typing import Iterator, TextIO

from .buckets import BucketPath, Location, is_url, location
from .errors import ConfigError
from .pairing import FileSig, Pair


def _signature(where: Location) -> FileSig:
    if isinstance(where, BucketPath):
        return FileSig(*where.signature())
    return FileSig.of(where)


def _beside(base: Location, text: str) -> Location:
    return location(text) if is_url(text) else base / text


def read_pairs_file(path: Location) -> Iterator[Pair]:
    """Pairs from a CSV (header: image,mask[,output]) or JSON-lines file; relative paths are from its folder."""
    base = path.parent
    rows = _jsonl_rows(path) if path.suffix.lower() in (".jsonl", ".ndjson") else _csv_rows(path)
    claimed: set[str] = set()
    for line_no, row in rows:
        image_s, mask_s, out_s = (row.get("image") or "").strip(), (row.get("mask") or "").strip(), (row.get("output") or "").strip()
        where = f"{path.name} line {line_no}"
        if not image_s:
            raise ConfigError(f"{path}: line {line_no}: no image")
        image = _beside(base, image_s)
        mask = _beside(base, mask_s) if mask_s else None
        problem: str | None = None
        image_sig: FileSig | None
        mask_sig: FileSig | None
        output_base = _safe_output_base(out_s or image_s, from_output=bool(out_s))
        if output_base is None:
            problem = f"output path {out_s!r} would leave the output folder ({where})"
            output_base = f"_unsafe/{line_no}"
        elif output_base in claimed:
            problem = f"output {output_base!r} is claimed by an earlier line ({where})"
        claimed.add(output_base)
        try:
            image_sig = _signature(image)
            mask_sig = _signature(mask) if mask is not None else None
        except OSError as exc:
            problem = problem or f"cannot read {exc.filename}: {exc.strerror}"
            image_sig = mask_sig = None
        yield Pair(image_s, str(image), str(mask) if mask else None, output_base, image_sig, mask_sig, problem)


def _safe_output_base(raw: str, *, from_output: bool) -> str | None:
    """A relative, '..'-free output path without extension; None if an explicit output is unsafe."""
    if is_url(raw):  # an image in a bucket: its key's path
        raw = raw.split("://", 1)[1].partition("/")[2]
    p = PurePosixPath(raw.replace("\\", "/"))
    unsafe = p.is_absolute() or ".." in p.parts or raw.startswith("~")
    if unsafe:
        if from_output:
            return None
        p = PurePosixPath(p.name)  # an input outside the list's folder: keep only its name
    parts = [part for part in p.parts if part not in ("", ".")]
    if not parts:
        return None
    cleaned = PurePosixPath(*parts)
    return str(cleaned.with_suffix("")) if cleaned.suffix else str(cleaned)


def _open(path: Location) -> TextIO:
    if isinstance(path, BucketPath):
        return io.StringIO(path.read_bytes().decode("utf-8"), newline="")
    return path.open(newline="", encoding="utf-8")


def _csv_rows(path: Location) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        with _open(path) as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "image" not in reader.fieldnames:
                raise ConfigError(f"{path}: a pairs CSV needs a header with 'image' and 'mask' columns")
            for row in reader:
                yield reader.line_num, row
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the pairs file: {exc.strerror}") from None


def _jsonl_rows(path: Location) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        with _open(path) as fh:
            for line_no, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{path}: line {line_no}: not JSON: {exc.msg}") from None
                if not isinstance(row, dict):
                    raise ConfigError(f"{path}: line {line_no}: expected an object")
                yield line_no, {k: str(v) for k, v in row.items() if v is not None}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the pairs file: {exc.strerror}") from None
