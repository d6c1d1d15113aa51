"""The walk over paged listings (buckets) pairs exactly as the folder walk does, page after page."""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Iterator

import pytest

from batch_inpaint import paged_walk
from batch_inpaint.buckets import Listed, local_pages
from batch_inpaint.pairing import Folder, OrphanMask, Pair, PairingRules, UnreadableFolder, walk, walk_folders

STEMS = ["a", "a0", "a1", "a_b", "a-mask", "a_mask", "b", "b.c", "B", "c10", "c1", "img_0001", "img_00010", "z"]
EXTS = [".jpg", ".png", ".JPG", ".webp", ".txt"]


def tree(root: Path, seed: int) -> None:
    """Pictures with sibling masks (both suffixes), mirrored masks, clashing stems and orphans."""
    rng = random.Random(seed)
    for folder in ("", "sub/", "sub/deep/"):
        for stem in rng.sample(STEMS, 9):
            (root / "in" / folder).mkdir(parents=True, exist_ok=True)
            (root / "m" / folder).mkdir(parents=True, exist_ok=True)
            for ext in rng.sample(EXTS, rng.choice([1, 1, 2])):
                (root / "in" / folder / f"{stem}{ext}").write_bytes(b"p" * rng.randint(1, 9))
            for suffix in ("_mask", "-mask"):
                if rng.random() < 0.5:
                    (root / "in" / folder / f"{stem}{suffix}.png").write_bytes(b"m")
            if rng.random() < 0.7:
                (root / "m" / folder / f"{stem}{rng.choice(['.png', '.jpg'])}").write_bytes(b"mm")
        (root / "m" / folder / "orphan.png").write_bytes(b"o")


def in_pages(size: int):  # type: ignore[no-untyped-def]
    """Each folder's listing cut in pages of ``size``, as a store lists."""

    def pages(where: Path) -> Iterator[list[Listed]]:
        listed = [entry for page in local_pages(where) for entry in page] if where.is_dir() else []
        for start in range(0, len(listed), size):
            yield listed[start:start + size]

    return pages


def outcome(items: list[object]) -> tuple[dict[str, tuple[str | None, str, object, object]], list[str]]:
    pairs = {p.key: (p.mask_file, p.output_base, p.image_sig, p.mask_sig) for p in items if isinstance(p, Pair)}
    orphans = sorted(str(o.path) for o in items if isinstance(o, OrphanMask))
    return pairs, orphans


@pytest.mark.parametrize("seed,page,suffix", list(itertools.product(range(6), (1, 3, 1000), ("_mask", "-mask"))))
@pytest.mark.parametrize("mirror", [False, True])
def test_pages_pair_as_the_folder_walk_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, page: int,
                                            suffix: str, mirror: bool) -> None:
    tree(tmp_path, seed)
    rules = PairingRules(masks_dir=tmp_path / "m" if mirror else None, mask_suffix=suffix,
                         exclude=("*0001*",) if seed % 2 else ())
    expected = outcome(list(walk(tmp_path / "in", rules)))
    monkeypatch.setattr(paged_walk, "pages", in_pages(page))
    got = []
    for folder in paged_walk.walk_listed(tmp_path / "in", rules):
        assert isinstance(folder, Folder)
        got += folder.sign() + folder.orphan_masks()
    assert outcome(got) == expected
    assert len(expected[0]) > 10


def test_one_mask_for_all_through_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree(tmp_path, 3)
    logo = tmp_path / "logo.png"
    logo.write_bytes(b"logo")
    rules = PairingRules(mask_file=logo)
    expected = outcome(list(walk(tmp_path / "in", rules)))
    monkeypatch.setattr(paged_walk, "pages", in_pages(2))
    got = [item for folder in paged_walk.walk_listed(tmp_path / "in", rules) if isinstance(folder, Folder)
           for item in folder.sign()]
    assert outcome(got) == expected and all(p.mask_file == str(logo) for p in got)


def test_pictures_go_on_while_the_listing_of_a_flat_prefix_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flat prefix of 100,000 pairs: the first pictures are handed on after the first page, not the last."""
    listed: list[int] = []

    def pages(where: object) -> Iterator[list[Listed]]:
        names = sorted(n for i in range(100_000) for n in (f"p{i:06d}.jpg", f"p{i:06d}_mask.png"))
        for start in range(0, len(names), 1000):
            listed.append(start)
            yield [Listed(name, False, 10, 1) for name in names[start:start + 1000]]

    monkeypatch.setattr(paged_walk, "pages", pages)
    monkeypatch.setattr(paged_walk, "require", lambda *args, **kwargs: None)
    walked = paged_walk.walk_listed(Path("/nowhere"), PairingRules())
    first = next(walked)
    assert isinstance(first, Folder) and len(listed) == 1 and len(first.images) >= 499
    total = len(first.images) + sum(len(f.images) for f in walked if isinstance(f, Folder))
    assert total == 100_000 and len(listed) == 200


def test_a_folder_that_cannot_be_listed_is_reported_and_the_rest_walked(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    tree(tmp_path, 1)
    real = in_pages(1000)

    def pages(where: Path) -> Iterator[list[Listed]]:
        if where.name == "deep":
            raise PermissionError(13, "access denied")
        return real(where)

    monkeypatch.setattr(paged_walk, "pages", pages)
    found = list(paged_walk.walk_listed(tmp_path / "in", PairingRules()))
    [unreadable] = [f for f in found if isinstance(f, UnreadableFolder)]
    assert unreadable.rel == "sub/deep/" and "access denied" in unreadable.reason
    assert any(isinstance(f, Folder) and f.rel == "sub/" for f in found)


def test_the_walk_through_pages_is_taken_for_any_bucket(tmp_path: Path) -> None:
    from batch_inpaint.buckets import BucketPath

    assert paged_walk.is_paged(BucketPath("s3://b/p"), PairingRules())
    assert paged_walk.is_paged(tmp_path, PairingRules(masks_dir=BucketPath("s3://b/m")))
    assert not paged_walk.is_paged(tmp_path, PairingRules(masks_dir=tmp_path))
    assert list(walk_folders(tmp_path, PairingRules())) == []
