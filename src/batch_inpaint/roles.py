"""Folders in their roles: input, masks and output must not overlap in a way that costs credits.

Each check here was a paid mistake once: an output folder inside the masks folder paid for results it
then refused to write, a masks folder equal to the input paired every picture with itself. All of
them run before the lock, the manifest or any request.
"""

from __future__ import annotations

from pathlib import Path

from .buckets import BucketPath, Location
from .errors import ConfigError
from .settings import Settings


def _within(path: Location, folder: Location) -> bool:
    """``path`` is ``folder`` or somewhere inside it (both resolved; a bucket's never in a local folder)."""
    if isinstance(path, BucketPath) or isinstance(folder, BucketPath):
        return isinstance(path, BucketPath) and isinstance(folder, BucketPath) and path.within(folder)
    return path == folder or folder in path.parents


def check_roles(s: Settings) -> None:
    """Raises ConfigError naming both sides of every contradiction and overlap."""
    if s.mask_file is not None and s.masks_dir is not None:
        raise ConfigError(f"--mask {s.mask_file} and --masks {s.masks_dir} contradict each other: "
                          "give one mask for every image, or a folder of masks, not both")
    if s.masks_from is not None:
        for given, flag in ((s.masks_dir, "--masks"), (s.mask_file, "--mask"), (s.pairs_file, "--pairs")):
            if given is not None:
                raise ConfigError(f"--masks-from {s.masks_from} and {flag} {given} contradict each other: the masks "
                                  "are drawn from the annotations")
    if s.pairs_file is not None:
        for given, flag in ((s.input_dir, "an input folder"), (s.masks_dir, "--masks"), (s.mask_file, "--mask")):
            if given is not None:
                raise ConfigError(f"--pairs {s.pairs_file} and {flag} ({given}) contradict each other: "
                                  "the pairs file names every image and mask")
    if s.out_dir is None:
        return
    out = s.out_dir.resolve()
    if s.input_dir is not None and _within(out, s.input_dir.resolve()):
        raise ConfigError(f"{s.out_dir}: the output folder must not be the input folder or inside it")
    if s.masks_dir is not None:
        masks = s.masks_dir.resolve()
        if _within(out, masks):
            raise ConfigError(f"{s.out_dir}: the output folder must not be the masks folder ({s.masks_dir}) "
                              "or inside it")
        if s.input_dir is not None and masks == s.input_dir.resolve():
            raise ConfigError(f"--masks {s.masks_dir} is the input folder: every picture would be paired with "
                              "itself. Put the masks in a folder of their own, or name them beside their images "
                              "with --mask-suffix")
    if s.mask_file is not None and _within(s.mask_file.resolve(), out):
        raise ConfigError(f"{s.mask_file}: the mask must not be inside the output folder ({s.out_dir})")
    for given, flag, why in ((s.report_dir, "--report-dir", "its thumbnails would be walked as pictures"),
                             (s.metrics_file, "--metrics-file", "a watch would take its writes for new work"),
                             (s.manifest if isinstance(s.manifest, Path) else None, "--manifest",
                              "a watch would take its writes for new work"),
                             (s.save_masks, "--save-masks", "its masks would be walked as pictures")):
        for folder, what in ((s.input_dir, "input"), (s.masks_dir, "masks")):
            if given is not None and folder is not None and _within(given.resolve(), folder.resolve()):
                raise ConfigError(f"{flag} {given}: it must not be inside the {what} folder ({folder}): {why}")

def masks_inside_input(s: Settings) -> str | None:
    """The masks folder's path relative to the input folder when it lies inside it: the walk leaves it
    out (its files are masks, not pictures to clean)."""
    if s.masks_dir is None or s.input_dir is None:
        return None
    masks, root = s.masks_dir.resolve(), s.input_dir.resolve()
    if isinstance(masks, BucketPath) or isinstance(root, BucketPath):
        if isinstance(masks, BucketPath) and isinstance(root, BucketPath) and masks != root and masks.within(root):
            return masks.url[len(root.url) + 1:]
        return None
    if root in masks.parents:
        return masks.relative_to(root).as_posix()
    return None
