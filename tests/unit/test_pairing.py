from __future__ import annotations

import os
from pathlib import Path

import pytest

from batch_inpaint.errors import ConfigError
from batch_inpaint.pairing import FileSig, Folder, OrphanMask, Pair, PairingRules, split_name, walk, walk_folders
from batch_inpaint.pairs_file import read_pairs_file


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def pairs(root: Path, rules: PairingRules) -> list[Pair]:
    return [p for p in walk(root, rules) if isinstance(p, Pair)]


@pytest.mark.parametrize("name", ["a.jpg", "a.b.JPEG", "noext", "trailing.", "x..png", "_mask.png", "a b.Png"])
def test_split_name_agrees_with_splitext(name: str) -> None:
    stem, ext = os.path.splitext(name)
    assert split_name(name) == (stem, ext.lower())


def test_signatures_are_those_of_the_files(tmp_path: Path) -> None:
    """Stat'ed through an open folder: the sizes and times must be the files' own, mask included."""
    image, mask = touch(tmp_path / "in" / "d" / "p.jpg", b"12345"), touch(tmp_path / "m" / "d" / "p.png", b"12")
    os.utime(mask, ns=(1, 7_000_000_123))
    [pair] = pairs(tmp_path / "in", PairingRules(masks_dir=tmp_path / "m"))
    assert pair.image_sig == FileSig(5, image.stat().st_mtime_ns)
    assert pair.mask_sig == FileSig(2, 7_000_000_123)
    assert pair.image_file == str(image) and pair.mask_file == str(mask)


def test_sibling_masks_are_never_inputs(tmp_path: Path) -> None:
    touch(tmp_path / "a.jpg"), touch(tmp_path / "a_mask.png"), touch(tmp_path / "b.JPG"), touch(tmp_path / "c_mask.png")
    found = list(walk(tmp_path, PairingRules()))
    got = {p.key: p.mask.name if p.mask else None for p in found if isinstance(p, Pair)}
    assert got == {"a.jpg": "a_mask.png", "b.JPG": None}
    assert [o.path.name for o in found if isinstance(o, OrphanMask)] == ["c_mask.png"]


def test_mirror_tree_any_mask_format_and_recursion(tmp_path: Path) -> None:
    touch(tmp_path / "in" / "x" / "y" / "p.jpg"), touch(tmp_path / "m" / "x" / "y" / "p.jpg")
    touch(tmp_path / "in" / "top.png"), touch(tmp_path / "m" / "top.png")
    rules = PairingRules(masks_dir=tmp_path / "m")
    found = {p.key: p for p in pairs(tmp_path / "in", rules)}
    assert found["x/y/p.jpg"].mask == tmp_path / "m" / "x" / "y" / "p.jpg"
    assert found["x/y/p.jpg"].output_rel("png") == "x/y/p.png"
    flat = pairs(tmp_path / "in", PairingRules(masks_dir=tmp_path / "m", recursive=False))
    assert [p.key for p in flat] == ["top.png"]


def test_one_mask_for_all(tmp_path: Path) -> None:
    touch(tmp_path / "in" / "a.jpg"), touch(tmp_path / "in" / "s" / "b.jpg")
    logo = touch(tmp_path / "logo.png")
    assert {p.mask for p in pairs(tmp_path / "in", PairingRules(mask_file=logo))} == {logo}


def test_same_stem_images_get_distinct_outputs(tmp_path: Path) -> None:
    touch(tmp_path / "a.jpg"), touch(tmp_path / "a.png"), touch(tmp_path / "a_mask.png")
    outputs = sorted(p.output_rel("png") for p in pairs(tmp_path, PairingRules()))
    assert outputs == ["a.jpg.png", "a.png.png"]


def test_hidden_files_globs_and_tool_folder(tmp_path: Path) -> None:
    touch(tmp_path / ".hidden.jpg"), touch(tmp_path / ".batch-inpaint" / "x.jpg")
    touch(tmp_path / "keep.jpg"), touch(tmp_path / "skip.jpg"), touch(tmp_path / "raw" / "r.jpg")
    keys = [p.key for p in pairs(tmp_path, PairingRules(exclude=("skip*", "raw/*")))]
    assert keys == ["keep.jpg"]
    assert sorted(p.key for p in pairs(tmp_path, PairingRules(include=("*.jpg",), exclude=("keep.jpg",)))) == ["raw/r.jpg", "skip.jpg"]


def test_symlinks_are_not_followed_unless_asked(tmp_path: Path) -> None:
    outside = touch(tmp_path / "outside" / "secret.jpg")
    touch(tmp_path / "in" / "real.jpg")
    os.symlink(outside, tmp_path / "in" / "link.jpg")
    os.symlink(tmp_path / "outside", tmp_path / "in" / "linkdir")
    os.symlink(tmp_path / "in", tmp_path / "in" / "loop")
    assert [p.key for p in pairs(tmp_path / "in", PairingRules())] == ["real.jpg"]
    followed = sorted(p.key for p in pairs(tmp_path / "in", PairingRules(follow_symlinks=True)))
    assert followed == ["link.jpg", "linkdir/secret.jpg", "real.jpg"]


def test_missing_input_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="input folder not found"):
        list(walk(tmp_path / "nope", PairingRules()))


def test_pairs_file_csv_and_jsonl_with_unsafe_paths(tmp_path: Path) -> None:
    touch(tmp_path / "img" / "a.jpg"), touch(tmp_path / "img" / "a.png")
    (tmp_path / "list.csv").write_text(
        "image,mask,output\n"
        "img/a.jpg,img/a.png,\n"
        "img/a.jpg,img/a.png,../escape\n"
        "img/a.jpg,img/a.png,/etc/passwd\n"
        "img/a.jpg,img/a.png,renamed/b\n"
        "img/a.jpg,img/a.png,renamed/b.png\n"
        "/abs/elsewhere/z.jpg,img/a.png,\n"
        "missing.jpg,img/a.png,\n"
    )
    got = list(read_pairs_file(tmp_path / "list.csv"))
    assert got[0].output_base == "img/a" and got[0].problem is None
    assert "would leave the output folder" in str(got[1].problem)
    assert "would leave the output folder" in str(got[2].problem)
    assert got[3].output_base == "renamed/b" and got[3].problem is None
    assert "claimed by an earlier line" in str(got[4].problem)
    assert got[5].output_base == "z"
    assert "cannot read" in str(got[6].problem)
    (tmp_path / "list.jsonl").write_text('{"image": "img/a.jpg", "mask": "img/a.png"}\n\n')
    assert [p.key for p in read_pairs_file(tmp_path / "list.jsonl")] == ["img/a.jpg"]
    (tmp_path / "bad.csv").write_text("picture,mask\nx,y\n")
    with pytest.raises(ConfigError, match="header"):
        list(read_pairs_file(tmp_path / "bad.csv"))


def test_a_folder_that_cannot_be_read_is_reported_not_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As root nothing is unreadable, so os.scandir is made to refuse one folder."""
    from batch_inpaint.pairing import UnreadableFolder
    from batch_inpaint.synthetic import write_tree

    write_tree(tmp_path / "data", ["a", "locked/b", "locked/c"], size=(32, 24))
    real = os.scandir

    def scandir(path):  # type: ignore[no-untyped-def]
        if str(path).endswith("/photos/locked"):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    walked = list(walk(tmp_path / "data" / "photos", PairingRules(masks_dir=tmp_path / "data" / "masks")))
    folders = [w for w in walked if isinstance(w, UnreadableFolder)]
    assert [f.rel for f in folders] == ["locked/"]
    assert "Permission denied" in folders[0].reason and "left out" in folders[0].reason
    assert [w.key for w in walked if hasattr(w, "key")] == ["a.jpg"]


@pytest.mark.parametrize("layout", ["sibling", "mirror", "one mask", "symlinks followed"])
def test_folders_signed_a_slice_at_a_time_give_the_walk_less_what_the_caller_knows(tmp_path: Path,
                                                                                   layout: str) -> None:
    """`triage` signs each walked folder a slice at a time and makes no `Pair` for an item it already
    knows: what is left must be the walk's pairs, with the files' real sizes and times, less those."""
    root, masks = tmp_path / "in", tmp_path / "m"
    for i, folder in enumerate(["", "d/", "d/e/"]):
        touch(root / f"{folder}p{i}.jpg", b"1" * (i + 3))
        touch((root if layout == "sibling" else masks) / f"{folder}p{i}{'_mask' if layout == 'sibling' else ''}.png",
              b"2" * (i + 1))
    os.symlink(root / "p0.jpg", root / "d" / "linked.jpg")
    touch(masks / "d" / "linked.png")
    rules = {"sibling": PairingRules(), "mirror": PairingRules(masks_dir=masks),
             "one mask": PairingRules(mask_file=masks / "p0.png"),
             "symlinks followed": PairingRules(masks_dir=masks, follow_symlinks=True)}[layout]
    walked = [p for p in walk(root, rules) if isinstance(p, Pair)]
    assert len(walked) == (4 if rules.follow_symlinks else 3)
    for pair in walked:
        assert pair.image_sig == FileSig.of(pair.image)
        assert pair.mask_sig == (None if pair.mask is None else FileSig.of(pair.mask))
    asked: list[tuple[str, tuple[int | None, ...]]] = []

    def known(key: str, sigs: tuple[int | None, ...]) -> bool:
        asked.append((key, sigs))
        return key == "d/p1.jpg"

    folders = [f for f in walk_folders(root, rules) if isinstance(f, Folder)]
    sliced = [p for f in folders for start in range(len(f.images)) for p in f.sign(start, start + 1, known)]
    assert sliced == [p for p in walked if p.key != "d/p1.jpg"]
    assert asked == [(p.key, p.image_sig + (p.mask_sig or (None, None))) for p in walked]


def test_a_single_mask_gone_after_the_walk_makes_each_pair_invalid_with_the_reason(tmp_path: Path) -> None:
    touch(tmp_path / "in" / "a.jpg")
    touch(tmp_path / "one.png")
    [folder] = list(walk_folders(tmp_path / "in", PairingRules(mask_file=tmp_path / "one.png")))
    (tmp_path / "one.png").unlink()
    [pair] = folder.sign()
    assert (pair.key, pair.mask_file, pair.problem) == ("a.jpg", None, "cannot stat: No such file or directory")
