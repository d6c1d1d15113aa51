"""Finding the work: a `Pair` for every image, whatever the layout of the masks.

The walk streams one directory at a time, so memory stays flat and the first pair is ready long before
a huge tree has been walked.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

from .errors import ConfigError
from .settings import Settings

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".heic", ".heif"}
)
TOOL_DIR = ".batch-inpaint"


@dataclass(frozen=True, slots=True)
class FileSig:
    """What a file looks like without reading it: a change means it must be looked at again."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> "FileSig":
        st = path.stat()
        return cls(st.st_size, st.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class Pair:
    """One image and its mask. ``key`` is the image's path relative to the input (POSIX form).

    Paths are kept as strings: a walk makes millions of these, and most are skipped as done.
    """

    key: str
    image_file: str
    mask_file: str | None
    output_base: str
    image_sig: FileSig | None = None
    mask_sig: FileSig | None = None
    problem: str | None = None

    @property
    def image(self) -> Path:
        return Path(self.image_file)

    @property
    def mask(self) -> Path | None:
        return None if self.mask_file is None else Path(self.mask_file)

    def output_rel(self, fmt: str) -> str:
        return f"{self.output_base}.{'jpg' if fmt == 'jpg' else fmt}"


@dataclass(frozen=True, slots=True)
class OrphanMask:
    """A mask with no image beside it: listed in the summary, never processed."""

    path: Path


@dataclass(frozen=True, slots=True)
class PairingRules:
    masks_dir: Path | None = None
    mask_file: Path | None = None
    mask_suffix: str = "_mask"
    recursive: bool = True
    follow_symlinks: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


def pairs_for(s: Settings) -> Iterator["Pair | OrphanMask"]:
    """Every pair the settings describe: the explicit list when there is one, else the walk."""
    if s.pairs_file is not None:
        return iter(read_pairs_file(s.pairs_file))
    if s.input_dir is None:
        raise ConfigError("no input folder")
    rules = PairingRules(s.masks_dir, s.mask_file, s.mask_suffix, s.recursive, s.follow_symlinks, s.include, s.exclude)
    return walk(s.input_dir, rules)


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _matches(rel: str, patterns: tuple[str, ...]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)


def _sig(entry: os.DirEntry[str], follow: bool) -> FileSig:
    st = entry.stat(follow_symlinks=follow)
    return FileSig(st.st_size, st.st_mtime_ns)


def walk(root: Path, rules: PairingRules) -> Iterator[Pair | OrphanMask]:
    """Yield a Pair for every image under ``root`` and an OrphanMask for every mask without an image."""
    if not root.is_dir():
        raise ConfigError(f"{root}: input folder not found or not a folder")
    if rules.masks_dir is not None and not rules.masks_dir.is_dir():
        raise ConfigError(f"{rules.masks_dir}: mask folder not found or not a folder")
    if rules.mask_file is not None and not rules.mask_file.is_file():
        raise ConfigError(f"{rules.mask_file}: mask file not found")
    seen_dirs: set[tuple[int, int]] = set()
    yield from _walk_dir(root, "", rules, seen_dirs)


def _walk_dir(
    directory: Path, rel_dir: str, rules: PairingRules, seen_dirs: set[tuple[int, int]]
) -> Iterator[Pair | OrphanMask]:
    if rules.follow_symlinks:
        st = directory.stat()
        if (st.st_dev, st.st_ino) in seen_dirs:
            return  # a symlink loop
        seen_dirs.add((st.st_dev, st.st_ino))
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return
    files: list[os.DirEntry[str]] = []
    subdirs: list[os.DirEntry[str]] = []
    for entry in entries:
        if entry.name.startswith("."):
            continue  # hidden files, and the tool's own folder
        try:
            if entry.is_dir(follow_symlinks=rules.follow_symlinks):
                subdirs.append(entry)
            elif entry.is_file(follow_symlinks=rules.follow_symlinks) and is_image_name(entry.name):
                files.append(entry)
        except OSError:
            continue
    yield from _pairs_in_dir(directory, rel_dir, files, rules)
    if rules.recursive:
        for sub in subdirs:
            yield from _walk_dir(Path(sub.path), f"{rel_dir}{sub.name}/", rules, seen_dirs)


def _pairs_in_dir(
    directory: Path, rel_dir: str, files: list[os.DirEntry[str]], rules: PairingRules
) -> Iterator[Pair | OrphanMask]:
    sibling_masks: dict[str, os.DirEntry[str]] = {}
    images: list[os.DirEntry[str]] = []
    suffix = rules.mask_suffix
    sibling_mode = rules.masks_dir is None and rules.mask_file is None
    for entry in files:
        stem = os.path.splitext(entry.name)[0]
        if sibling_mode and suffix and stem.endswith(suffix):
            sibling_masks.setdefault(stem[: -len(suffix)], entry)
        else:
            images.append(entry)
    if rules.include or rules.exclude:
        images = [e for e in images if _selected(rel_dir + e.name, rules)]
    stems = [os.path.splitext(e.name)[0] for e in images]
    clashing = {s for s in stems if stems.count(s) > 1} if len(set(stems)) != len(stems) else set()
    masks = sibling_masks if sibling_mode else _mirror_masks(rules.masks_dir / rel_dir if rules.masks_dir else None)
    fixed_mask = str(rules.mask_file) if rules.mask_file is not None else None
    fixed_sig = FileSig.of(rules.mask_file) if rules.mask_file is not None else None
    used: set[str] = set()
    follow = rules.follow_symlinks
    for entry, stem in zip(images, stems):
        base = rel_dir + (entry.name if stem in clashing else stem)
        key = rel_dir + entry.name
        mask_entry = masks.get(stem)
        try:
            image_sig = _sig(entry, follow)
            if fixed_mask is not None:
                mask_file, mask_sig = fixed_mask, fixed_sig
            elif mask_entry is not None:
                used.add(stem)
                mask_file, mask_sig = mask_entry.path, _sig(mask_entry, True)
            else:
                mask_file, mask_sig = None, None
        except OSError as exc:
            yield Pair(key, entry.path, None, base, problem=f"cannot stat: {exc.strerror}")
            continue
        yield Pair(key, entry.path, mask_file, base, image_sig, mask_sig)
    if fixed_mask is None:
        for stem in sorted(set(masks) - used):
            yield OrphanMask(Path(masks[stem].path))


def _selected(rel: str, rules: PairingRules) -> bool:
    if rules.include and not _matches(rel, rules.include):
        return False
    return not (rules.exclude and _matches(rel, rules.exclude))


def _mirror_masks(mask_dir: Path | None) -> dict[str, os.DirEntry[str]]:
    """Masks in the mirror folder by stem, any image format, PNG preferred."""
    found: dict[str, os.DirEntry[str]] = {}
    try:
        entries = sorted(os.scandir(mask_dir), key=lambda e: e.name) if mask_dir is not None else []
    except OSError:
        return found
    for entry in entries:
        if entry.name.startswith(".") or not is_image_name(entry.name) or not entry.is_file():
            continue
        stem, ext = os.path.splitext(entry.name)
        if stem not in found or ext.lower() == ".png":
            found[stem] = entry
    return found


# --- an explicit list of pairs -------------------------------------------------------------------


def read_pairs_file(path: Path) -> Iterator[Pair]:
    """Pairs from a CSV (header: image,mask[,output]) or JSON-lines file; relative paths are from its folder."""
    base = path.parent
    rows = _jsonl_rows(path) if path.suffix.lower() in (".jsonl", ".ndjson") else _csv_rows(path)
    claimed: set[str] = set()
    for line_no, row in rows:
        image_s, mask_s, out_s = (row.get("image") or "").strip(), (row.get("mask") or "").strip(), (row.get("output") or "").strip()
        where = f"{path.name} line {line_no}"
        if not image_s:
            raise ConfigError(f"{path}: line {line_no}: no image")
        image = base / image_s
        mask = base / mask_s if mask_s else None
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
            image_sig = FileSig.of(image)
            mask_sig = FileSig.of(mask) if mask is not None else None
        except OSError as exc:
            problem = problem or f"cannot read {exc.filename}: {exc.strerror}"
            image_sig = mask_sig = None
        yield Pair(image_s, str(image), str(mask) if mask else None, output_base, image_sig, mask_sig, problem)


def _safe_output_base(raw: str, *, from_output: bool) -> str | None:
    """A relative, '..'-free output path without extension; None if an explicit output is unsafe."""
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


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "image" not in reader.fieldnames:
                raise ConfigError(f"{path}: a pairs CSV needs a header with 'image' and 'mask' columns")
            for row in reader:
                yield reader.line_num, row
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the pairs file: {exc.strerror}") from None


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        with path.open(encoding="utf-8") as fh:
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
