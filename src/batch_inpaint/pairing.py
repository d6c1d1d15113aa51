"""Finding the work: a `Pair` for every image, whatever the layout of the masks.

The walk streams one directory at a time, so memory stays flat and the first pair is ready long before
a huge tree has been walked.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Union

from . import signatures
from .buckets import BucketPath, Location, location
from .errors import ConfigError
from .signatures import SliceRequest, Taken
from .settings import Settings

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".heic", ".heif"}
)


class FileSig(NamedTuple):
    """What a file looks like without reading it: a change means it must be looked at again."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> "FileSig":
        st = path.stat()
        return cls(st.st_size, st.st_mtime_ns)


class Pair(NamedTuple):
    """One image and its mask. ``key`` is the image's path relative to the input (POSIX form).

    A tuple with paths kept as strings: a walk makes millions of these, and most are skipped as done.
    """

    key: str
    image_file: str
    mask_file: str | None
    output_base: str
    image_sig: FileSig | None = None
    mask_sig: FileSig | None = None
    problem: str | None = None

    @property
    def image(self) -> Location:
        return location(self.image_file)

    @property
    def mask(self) -> Location | None:
        return None if self.mask_file is None else location(self.mask_file)

    def output_rel(self, fmt: str) -> str:
        return f"{self.output_base}.{'jpg' if fmt == 'jpg' else fmt}"


@dataclass(frozen=True, slots=True)
class OrphanMask:
    """A mask with no image beside it: listed in the summary, never processed."""

    path: Location


@dataclass(frozen=True, slots=True)
class UnreadableFolder:
    """A folder the walk could not list: its pictures are left out, and the run reports it as it
    reports an invalid item (not recorded: once readable, its pictures are simply walked)."""

    rel: str
    reason: str


Walked = Union[Pair, OrphanMask, UnreadableFolder]


@dataclass(frozen=True, slots=True)
class PairingRules:
    masks_dir: Location | None = None
    mask_file: Location | None = None
    mask_suffix: str = "_mask"
    recursive: bool = True
    follow_symlinks: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    #: A folder under the root the walk leaves out: the masks folder, when it lies inside the input.
    skip_dir: str | None = None


def pairs_or_folders(s: Settings) -> Iterator[Pair | Folder | UnreadableFolder]:
    """What the settings describe: the explicit list's pairs (signed) when there is one, else the
    walk's folders (`Folder.sign` makes their pairs)."""
    if s.pairs_file is not None:
        from .pairs_file import read_pairs_file

        return iter(read_pairs_file(s.pairs_file))
    if s.input_dir is None:
        raise ConfigError("no input folder")
    from .roles import masks_inside_input

    rules = PairingRules(s.masks_dir, s.mask_file, s.mask_suffix, s.recursive, s.follow_symlinks, s.include, s.exclude,
                         masks_inside_input(s))
    if s.masks_from is not None:  # the images the annotations name (COCO), or those under INPUT (YOLO)
        from .annotations import load

        assert isinstance(s.input_dir, Path)  # refused for a bucket (`runner.check_inputs`)
        return load(s.masks_from, classes=s.classes, dilate=s.mask_dilate, names_file=s.yolo_names).pairs(
            s.input_dir, rules)
    return walk_folders(s.input_dir, rules)


def split_name(name: str) -> tuple[str, str]:
    """(stem, lower-case extension), as os.path.splitext would give for a file name, at a third of the cost."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem.strip("."):
        return name, ""
    return stem, "." + ext.lower()


def _matches(rel: str, patterns: tuple[str, ...]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)


@dataclass(eq=False, slots=True)
class Folder:
    """The pictures of one directory, paired with their masks but not yet stat'ed: `sign` stats them,
    a slice at a time, and leaves out what its caller says it already knows (`triage`, where a re-run
    over a large folder spends its time); `walk` signs them all."""

    directory: str
    rel: str
    images: list[tuple[str, str]]  # (name, stem), sorted
    mask_dir: str
    masks: dict[str, str]  # image stem -> mask file name
    fixed_mask: str | None
    clashing: set[str]
    orphans: list[str]  # mask file names
    follow: bool
    #: The (size, tag) of each image and mask by name, from a store's listing (`paged_walk`): nothing to stat.
    listed: tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]]] | None = None

    def sign(self, start: int = 0, stop: int | None = None,
             known: Callable[[str, tuple[int | None, ...]], bool] | None = None,
             taken: list[Taken] | None = None) -> list[Pair]:
        """The pairs of images ``[start:stop]`` with their files' signatures, except those ``known``
        takes: it is asked with the key and (image size, mtime, mask size, mtime; None without a mask)
        before any `Pair` is made. A file that cannot be stat'ed makes its pair invalid, with the reason.
        ``taken``: the signatures already taken (`slice_request`, by a helper process)."""
        images = self.images[start:stop]
        if taken is None:
            taken = self._listed(start, stop) if self.listed is not None else signatures.take(
                *self.slice_request(start, stop))
        rel, directory, mask_dir, mask_names, fixed = self.rel, self.directory, self.mask_dir, self.masks, self.fixed_mask
        pairs: list[Pair] = []
        for (name, stem), sigs in zip(images, taken):
            key = rel + name
            if isinstance(sigs, str):
                pairs.append(Pair(key, f"{directory}/{name}", None, self._base(name, stem),
                                  problem=f"cannot stat: {sigs}"))
                continue
            if known is not None and known(key, sigs):
                continue
            mask_name = None if fixed is not None else mask_names.get(stem)
            mask_file = fixed if fixed is not None else None if mask_name is None else f"{mask_dir}/{mask_name}"
            pairs.append(Pair(key, f"{directory}/{name}", mask_file, self._base(name, stem), FileSig(sigs[0], sigs[1]),
                              None if sigs[2] is None else FileSig(sigs[2], sigs[3])))  # type: ignore[arg-type]
        return pairs

    def slice_request(self, start: int, stop: int | None) -> SliceRequest:
        """What `signatures.take` needs to stat images ``[start:stop]`` and their masks."""
        images, masks = self.images[start:stop], self.masks
        mask_names: list[str | None] = (
            [None] * len(images) if self.fixed_mask is not None else [masks.get(stem) for _, stem in images])
        return (self.directory, [name for name, _ in images], self.mask_dir, mask_names, self.fixed_mask, self.follow)

    def _listed(self, start: int, stop: int | None) -> list[Taken]:
        assert self.listed is not None
        image_sigs, mask_sigs = self.listed
        taken: list[Taken] = []
        for name, stem in self.images[start:stop]:
            mask = self.fixed_mask if self.fixed_mask is not None else self.masks.get(stem)
            mask_sig = mask_sigs.get(mask) if mask is not None else None
            taken.append((*image_sigs[name], *(mask_sig or (None, None))))
        return taken

    def _base(self, name: str, stem: str) -> str:
        return self.rel + (name if stem in self.clashing else stem)

    def orphan_masks(self) -> list[OrphanMask]:
        return [OrphanMask(location(f"{self.mask_dir}/{name}")) for name in self.orphans]


def walk(root: Location, rules: PairingRules) -> Iterator[Walked]:
    """Yield a Pair for every image under ``root`` and an OrphanMask for every mask without an image."""
    for folder in walk_folders(root, rules):
        if isinstance(folder, Folder):
            yield from folder.sign()
            yield from folder.orphan_masks()
        else:
            yield folder


def walk_folders(root: Location, rules: PairingRules) -> Iterator[Folder | UnreadableFolder]:
    """Every folder under ``root`` with pictures or orphan masks in it, a folder before its subfolders."""
    from .paged_walk import is_paged, walk_listed

    if is_paged(root, rules):
        yield from walk_listed(root, rules)
        return
    assert isinstance(root, Path) and not isinstance(rules.masks_dir, BucketPath)
    if not root.is_dir():
        raise ConfigError(f"{root}: input folder not found or not a folder")
    if rules.masks_dir is not None and not rules.masks_dir.is_dir():
        raise ConfigError(f"{rules.masks_dir}: mask folder not found or not a folder")
    if rules.mask_file is not None and not rules.mask_file.is_file():
        raise ConfigError(f"{rules.mask_file}: mask file not found")
    seen_dirs: set[tuple[int, int]] = set()
    yield from _walk_dir(str(root), "", rules, seen_dirs)


def _walk_dir(directory: str, rel_dir: str, rules: PairingRules,
              seen_dirs: set[tuple[int, int]]) -> Iterator[Folder | UnreadableFolder]:
    follow = rules.follow_symlinks
    if follow:
        st = os.stat(directory)
        if (st.st_dev, st.st_ino) in seen_dirs:
            return  # a symlink loop
        seen_dirs.add((st.st_dev, st.st_ino))
    files: list[tuple[str, str]] = []  # (name, stem)
    subdirs: list[str] = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith("."):
                    continue  # hidden files, and the tool's own folder
                try:
                    if entry.is_dir(follow_symlinks=follow):
                        subdirs.append(name)
                    elif entry.is_file(follow_symlinks=follow):
                        stem, ext = split_name(name)
                        if ext in IMAGE_EXTENSIONS:
                            files.append((name, stem))
                except OSError:
                    continue
    except OSError as exc:
        yield UnreadableFolder(rel_dir or "./", f"the folder cannot be read ({exc.strerror or exc}): its pictures "
                                                "were left out")
        return
    files.sort()
    subdirs.sort()
    folder = _folder(directory, rel_dir, files, rules)
    if folder.images or folder.orphans:
        yield folder
    if rules.recursive:
        for sub in subdirs:
            if rules.skip_dir == f"{rel_dir}{sub}":
                continue
            yield from _walk_dir(f"{directory}/{sub}", f"{rel_dir}{sub}/", rules, seen_dirs)


def _folder(directory: str, rel_dir: str, files: list[tuple[str, str]], rules: PairingRules) -> Folder:
    sibling_mode = rules.masks_dir is None and rules.mask_file is None
    suffix = rules.mask_suffix
    images: list[tuple[str, str]] = []  # (name, stem)
    masks: dict[str, str] = {}  # stem of the image it belongs to -> mask file name
    for name, stem in files:
        if sibling_mode and suffix and stem.endswith(suffix):
            masks.setdefault(stem[: -len(suffix)], name)
        else:
            images.append((name, stem))
    left_out: set[str] = set()  # the masks of images left out by --include/--exclude are not orphans
    if rules.include or rules.exclude:
        kept = [(n, s) for n, s in images if _selected(rel_dir + n, rules)]
        left_out = {s for _, s in images} - {s for _, s in kept}
        images = kept
    stems = [stem for _, stem in images]
    clashing = {s for s in stems if stems.count(s) > 1} if len(set(stems)) != len(stems) else set()
    mask_dir = directory
    if rules.masks_dir is not None:
        mask_dir = str(rules.masks_dir / rel_dir) if rel_dir else str(rules.masks_dir)
        masks = _mirror_masks(mask_dir)
    fixed = str(rules.mask_file) if rules.mask_file is not None else None
    orphans = [] if fixed is not None else [masks[stem] for stem in sorted(set(masks) - set(stems) - left_out)]
    return Folder(directory, rel_dir, images, mask_dir, masks, fixed, clashing, orphans, rules.follow_symlinks)


def _selected(rel: str, rules: PairingRules) -> bool:
    if rules.include and not _matches(rel, rules.include):
        return False
    return not (rules.exclude and _matches(rel, rules.exclude))


def _mirror_masks(mask_dir: str) -> dict[str, str]:
    """Mask file names in the mirror folder by stem, any image format, PNG preferred."""
    found: dict[str, str] = {}
    try:
        with os.scandir(mask_dir) as entries:
            names = sorted(e.name for e in entries if not e.name.startswith(".") and e.is_file())
    except OSError:
        return found
    for name in names:
        stem, ext = split_name(name)
        if ext in IMAGE_EXTENSIONS and (stem not in found or ext == ".png"):
            found[stem] = name
    return found
