"""Finding the work: a `Pair` for every image, whatever the layout of the masks.

The walk streams one directory at a time, so memory stays flat and the first pair is ready long before
a huge tree has been walked.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple, Union

from .errors import ConfigError
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
class UnreadableFolder:
    """A folder the walk could not list: its pictures are left out, and the run reports it as it
    reports an invalid item (not recorded: once readable, its pictures are simply walked)."""

    rel: str
    reason: str


Walked = Union[Pair, OrphanMask, UnreadableFolder]


@dataclass(frozen=True, slots=True)
class PairingRules:
    masks_dir: Path | None = None
    mask_file: Path | None = None
    mask_suffix: str = "_mask"
    recursive: bool = True
    follow_symlinks: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    #: A folder under the root the walk leaves out: the masks folder, when it lies inside the input.
    skip_dir: str | None = None
    #: False: pairs come without their files' signatures, for a `Signer` to stat as they are sorted.
    stat: bool = True


def pairs_for(s: Settings, *, stat: bool = True) -> Iterator["Walked"]:
    """Every pair the settings describe: the explicit list when there is one, else the walk (whose
    pairs come without signatures when not ``stat``: a list's always have them)."""
    if s.pairs_file is not None:
        from .pairs_file import read_pairs_file

        return iter(read_pairs_file(s.pairs_file))
    if s.input_dir is None:
        raise ConfigError("no input folder")
    from .roles import masks_inside_input

    rules = PairingRules(s.masks_dir, s.mask_file, s.mask_suffix, s.recursive, s.follow_symlinks, s.include, s.exclude,
                         masks_inside_input(s), stat)
    return walk(s.input_dir, rules)


def split_name(name: str) -> tuple[str, str]:
    """(stem, lower-case extension), as os.path.splitext would give for a file name, at a third of the cost."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem.strip("."):
        return name, ""
    return stem, "." + ext.lower()


def _matches(rel: str, patterns: tuple[str, ...]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)


class _Folder:
    """A directory whose files are stat'ed by name through one open descriptor (opened at the first
    stat), which spares the kernel a walk of the whole path for every file. Stat'ing is most of what
    a re-run over a million done items costs."""

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

    def sig(self, name: str, follow: bool) -> FileSig:
        st = self.stat(name, follow)
        return FileSig(st.st_size, st.st_mtime_ns)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Signer:
    """Stats the image and mask of pairs walked without signatures (``PairingRules.stat`` False), one
    open folder at a time, for a caller that compares what it finds as it goes: a re-run then makes
    no `FileSig` for an item it skips, and no second pass over it (`triage`)."""

    def __init__(self, follow_symlinks: bool) -> None:
        self._follow = follow_symlinks
        self._images = _Folder("")
        self._masks = _Folder("")

    def __call__(self, pair: Pair) -> tuple[os.stat_result, os.stat_result | None]:
        """The image's stat and the mask's (None without a mask). Raises OSError."""
        self._images, name = _folder_of(self._images, pair.image_file)
        image = self._images.stat(name, self._follow)
        if pair.mask_file is None:
            return image, None
        self._masks, name = _folder_of(self._masks, pair.mask_file)
        return image, self._masks.stat(name, True)

    def close(self) -> None:
        self._images.close()
        self._masks.close()


def cannot_stat(pair: Pair, exc: OSError) -> Pair:
    """The pair of a file that cannot be stat'ed, as the walk reports it: invalid, with the reason."""
    return pair._replace(mask_file=None, image_sig=None, mask_sig=None, problem=f"cannot stat: {exc.strerror}")


def _folder_of(folder: _Folder, path: str) -> tuple[_Folder, str]:
    """The folder ``path`` lies in (``folder`` itself, or one in its place) and the file's name there."""
    where, slash, name = path.rpartition("/")
    where = where or ("/" if slash else ".")
    if where != folder.path:
        folder.close()
        folder = _Folder(where)
    return folder, name


_STAT_BY_FD = os.stat in os.supports_dir_fd and os.stat in os.supports_follow_symlinks


def walk(root: Path, rules: PairingRules) -> Iterator[Walked]:
    """Yield a Pair for every image under ``root`` and an OrphanMask for every mask without an image."""
    if not root.is_dir():
        raise ConfigError(f"{root}: input folder not found or not a folder")
    if rules.masks_dir is not None and not rules.masks_dir.is_dir():
        raise ConfigError(f"{rules.masks_dir}: mask folder not found or not a folder")
    if rules.mask_file is not None and not rules.mask_file.is_file():
        raise ConfigError(f"{rules.mask_file}: mask file not found")
    seen_dirs: set[tuple[int, int]] = set()
    yield from _walk_dir(str(root), "", rules, seen_dirs)


def _walk_dir(directory: str, rel_dir: str, rules: PairingRules, seen_dirs: set[tuple[int, int]]) -> Iterator[Walked]:
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
    yield from _pairs_in_dir(directory, rel_dir, files, rules)
    if rules.recursive:
        for sub in subdirs:
            if rules.skip_dir == f"{rel_dir}{sub}":
                continue
            yield from _walk_dir(f"{directory}/{sub}", f"{rel_dir}{sub}/", rules, seen_dirs)


def _pairs_in_dir(
    directory: str, rel_dir: str, files: list[tuple[str, str]], rules: PairingRules
) -> Iterator[Walked]:
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
    here = _Folder(directory)
    mask_folder = here
    if rules.masks_dir is not None:
        mask_folder = _Folder(str(rules.masks_dir / rel_dir) if rel_dir else str(rules.masks_dir))
        masks = _mirror_masks(mask_folder.path)
    try:
        yield from _pairs(here, mask_folder, rel_dir, images, masks, clashing, rules, left_out)
    finally:
        here.close()
        mask_folder.close()


def _pairs(
    here: _Folder, mask_folder: _Folder, rel_dir: str, images: list[tuple[str, str]], masks: dict[str, str],
    clashing: set[str], rules: PairingRules, left_out: set[str],
) -> Iterator[Walked]:
    fixed_mask = str(rules.mask_file) if rules.mask_file is not None else None
    stat = rules.stat
    fixed_sig = FileSig.of(rules.mask_file) if rules.mask_file is not None and stat else None
    used: set[str] = set()
    follow = rules.follow_symlinks
    directory, mask_dir = here.path, mask_folder.path
    image_sig_of, mask_sig_of = here.sig, mask_folder.sig
    for name, stem in images:
        key, image_file = rel_dir + name, f"{directory}/{name}"
        base = rel_dir + (name if stem in clashing else stem)
        mask_name = masks.get(stem)
        if fixed_mask is not None:
            mask_file = fixed_mask
        elif mask_name is not None:
            used.add(stem)
            mask_file = f"{mask_dir}/{mask_name}"
        else:
            mask_file = None
        if not stat:
            yield Pair(key, image_file, mask_file, base)
            continue
        try:
            image_sig = image_sig_of(name, follow)
            mask_sig = fixed_sig if fixed_mask is not None else (
                None if mask_name is None else mask_sig_of(mask_name, True))
        except OSError as exc:
            yield Pair(key, image_file, None, base, problem=f"cannot stat: {exc.strerror}")
            continue
        yield Pair(key, image_file, mask_file, base, image_sig, mask_sig)
    if fixed_mask is None:
        for stem in sorted(set(masks) - used - left_out):
            yield OrphanMask(Path(f"{mask_dir}/{masks[stem]}"))


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
