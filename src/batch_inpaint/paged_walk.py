"""Pairing over listings that arrive a page at a time: a bucket's prefixes (and any mix of bucket and
local folders), where a flat prefix of a million keys must not be listed whole before the first pair.

A store lists a prefix in sorted order, so the names that start with a given text arrive together: once
the listing has gone past every name starting with ``stem.`` and ``stem`` + the mask suffix, no other
picture of that stem (a name clash) and no mask for it can come. Such pictures are handed on as a
`Folder` of their own while the listing goes on; only those still waiting for that are held, so memory
stays flat. With a masks prefix, its listing is read alongside, kept a page ahead.
"""

from __future__ import annotations

from typing import Iterator

from .buckets import BucketPath, Listed, Location, pages, require
from .errors import ConfigError
from .pairing import IMAGE_EXTENSIONS, Folder, PairingRules, UnreadableFolder, _selected, split_name

#: A listing's position once it has ended: past every name.
END = "\U0010ffff"


def passed(position: str | None, prefix: str) -> bool:
    """Every name that starts with ``prefix`` has been listed already."""
    return position is not None and position > prefix and not position.startswith(prefix)


def walk_listed(root: Location, rules: PairingRules) -> Iterator[Folder | UnreadableFolder]:
    """Every folder under ``root`` with pictures or orphan masks, as `pairing.walk_folders`, in pieces."""
    require(root, "input folder", folder=True)
    if rules.masks_dir is not None:
        require(rules.masks_dir, "mask folder", folder=True)
    fixed = None
    if rules.mask_file is not None:
        require(rules.mask_file, "mask file", folder=False)
        fixed = _signature(rules.mask_file)
    yield from _walk(root, "", rules, fixed)


def _signature(where: Location) -> tuple[int, int]:
    try:
        if isinstance(where, BucketPath):
            return where.signature()
        st = where.stat()
        return st.st_size, st.st_mtime_ns
    except OSError as exc:
        raise ConfigError(f"{where}: mask file cannot be read: {exc.strerror}") from None


def _walk(directory: Location, rel_dir: str, rules: PairingRules,
          fixed: tuple[int, int] | None) -> Iterator[Folder | UnreadableFolder]:
    masks_dir = rules.masks_dir
    mask_dir = directory if masks_dir is None else masks_dir / rel_dir if rel_dir else masks_dir
    pairing = _Pairing(directory, rel_dir, rules, mask_dir, fixed)
    subdirs: list[str] = []
    try:
        mask_pages = pages(mask_dir) if masks_dir is not None else iter(())
        for page in pages(directory):
            for entry in page:
                if entry.folder:
                    subdirs.append(entry.name)
                elif split_name(entry.name)[1] in IMAGE_EXTENSIONS:
                    pairing.add(entry)
            files = [entry.name for entry in page if not entry.folder]
            if files:
                pairing.position = files[-1]
            if masks_dir is not None:
                pairing.read_masks(mask_pages)
            yield from pairing.ready()
        pairing.position = END
        if masks_dir is not None:
            pairing.read_masks(mask_pages)
        yield from pairing.ready()
    except OSError as exc:
        yield UnreadableFolder(rel_dir or "./", f"the folder cannot be read ({exc.strerror or exc}): its pictures "
                                                "were left out")
        return
    if rules.recursive:
        for sub in sorted(subdirs):
            if rules.skip_dir != f"{rel_dir}{sub}":
                yield from _walk(directory / sub, f"{rel_dir}{sub}/", rules, fixed)


class _Pairing:
    """One folder's pictures and masks as its listing arrives; `ready` hands on those it can pair."""

    def __init__(self, directory: Location, rel: str, rules: PairingRules, mask_dir: Location,
                 fixed: tuple[int, int] | None) -> None:
        self.directory, self.rel, self.rules, self.mask_dir = directory, rel, rules, mask_dir
        self.fixed = None if rules.mask_file is None else str(rules.mask_file)
        self.fixed_sig = fixed
        self.sibling = rules.masks_dir is None and rules.mask_file is None
        self.suffix = rules.mask_suffix if self.sibling else ""
        #: The last file name listed in the folder (`END` when it is all listed), and in the masks'.
        self.position: str | None = None
        self.mask_position: str | None = None if rules.masks_dir is not None else END
        self.waiting: list[tuple[str, str, Listed]] = []  # (name, stem, entry) of pictures not handed on
        self.masks: dict[str, Listed] = {}  # by the stem of the picture each is for
        self.left_out: set[str] = set()  # stems of pictures --include/--exclude left out

    def add(self, entry: Listed) -> None:
        stem = split_name(entry.name)[0]
        if self.suffix and stem.endswith(self.suffix):
            self.masks.setdefault(stem[: -len(self.suffix)], entry)
        elif (self.rules.include or self.rules.exclude) and not _selected(self.rel + entry.name, self.rules):
            self.left_out.add(stem)
        else:
            self.waiting.append((entry.name, stem, entry))

    def read_masks(self, mask_pages: Iterator[list[Listed]]) -> None:
        """The masks' listing, read until it is past the pictures' (PNG preferred, as for files)."""
        while self.mask_position != END and (self.mask_position is None or self.position == END
                                             or self.mask_position <= (self.position or "")):
            page = next(mask_pages, None)
            if page is None:
                self.mask_position = END
                return
            for entry in page:
                stem, ext = split_name(entry.name)
                if not entry.folder and ext in IMAGE_EXTENSIONS and (stem not in self.masks or ext == ".png"):
                    self.masks[stem] = entry
            files = [entry.name for entry in page if not entry.folder]
            if files:
                self.mask_position = files[-1]

    def _resolved(self, stem: str) -> bool:
        """No other picture of this stem, and no mask for it, can be listed any more."""
        if not passed(self.position, stem + "."):
            return False
        if self.sibling:
            return not self.suffix or passed(self.position, stem + self.suffix)
        return self.fixed is not None or passed(self.mask_position, stem + ".")

    def ready(self) -> Iterator[Folder]:
        ready = [item for item in self.waiting if self._resolved(item[1])]
        if ready:
            self.waiting = [item for item in self.waiting if not self._resolved(item[1])]
        stems = {stem for _, stem, _ in self.waiting}
        taken = stems | {stem for _, stem, _ in ready}
        orphans = sorted(stem for stem in self.masks if stem not in taken and self._resolved(stem))
        if not ready and not orphans:
            return
        ready.sort()
        names = [stem for _, stem, _ in ready]
        clashing = {s for s in names if names.count(s) > 1} if len(set(names)) != len(names) else set()
        image_sigs = {name: (entry.size, entry.tag) for name, _, entry in ready}
        masks: dict[str, str] = {}
        mask_sigs: dict[str, tuple[int, int]] = {}
        for _, stem, _ in ready:
            mask = self.masks.pop(stem, None)
            if mask is not None:
                masks[stem] = mask.name
                mask_sigs[mask.name] = (mask.size, mask.tag)
        if self.fixed is not None and self.fixed_sig is not None:
            mask_sigs[self.fixed] = self.fixed_sig
        orphan_names = [self.masks.pop(stem).name for stem in orphans]
        orphan_names = [name for name, stem in zip(orphan_names, orphans) if stem not in self.left_out]
        if self.fixed is not None:
            orphan_names = []
        yield Folder(str(self.directory), self.rel, [(name, stem) for name, stem, _ in ready], str(self.mask_dir),
                     masks, self.fixed, clashing, orphan_names, False, (image_sigs, mask_sigs))


def is_paged(root: Location | None, rules: PairingRules) -> bool:
    """Whether a walk lists through stores (any of the input, masks or the one mask in a bucket)."""
    return any(isinstance(where, BucketPath) for where in (root, rules.masks_dir, rules.mask_file))

