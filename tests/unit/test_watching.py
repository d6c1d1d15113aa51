"""Watch's choices: which folders it follows, and where it polls instead of waiting for events."""

from __future__ import annotations

from pathlib import Path

from batch_inpaint.settings import Settings
from batch_inpaint.watching import needs_polling, watched_folders


def test_network_and_fuse_file_systems_are_polled(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/sda1 / ext4 rw 0 0\n"
                      "nas:/photos /mnt/nas nfs4 rw 0 0\n"
                      "bucket /mnt/s3 fuse.s3fs rw 0 0\n"
                      "/dev/sdb1 /mnt/nas/local ext4 rw 0 0\n"
                      "//srv/share /mnt/my\\040share cifs rw 0 0\n")
    assert not needs_polling(Path("/home/me/photos"), str(mounts))
    assert needs_polling(Path("/mnt/nas/photos"), str(mounts))
    assert not needs_polling(Path("/mnt/nas/local/photos"), str(mounts))  # the longest mount point wins
    assert not needs_polling(Path("/mnt/nasty"), str(mounts))
    assert needs_polling(Path("/mnt/s3/in"), str(mounts))
    assert needs_polling(Path("/mnt/my share/in"), str(mounts))
    assert not needs_polling(Path("/x"), str(tmp_path / "missing"))


def test_a_masks_folder_inside_the_input_is_followed_once(tmp_path: Path) -> None:
    (tmp_path / "in" / "masks").mkdir(parents=True)
    (tmp_path / "masks").mkdir()
    inside = Settings(input_dir=tmp_path / "in", masks_dir=tmp_path / "in" / "masks", out_dir=tmp_path / "out")
    assert watched_folders(inside) == [(tmp_path / "in").resolve()]
    apart = Settings(input_dir=tmp_path / "in", masks_dir=tmp_path / "masks", out_dir=tmp_path / "out")
    assert watched_folders(apart) == [(tmp_path / "in").resolve(), (tmp_path / "masks").resolve()]


def test_nothing_batch_inpaint_writes_may_lie_in_a_folder_it_watches(tmp_path: Path) -> None:
    import pytest

    from batch_inpaint.errors import ConfigError
    from batch_inpaint.roles import check_roles

    (tmp_path / "in").mkdir()
    for option, value in (("metrics_file", tmp_path / "in" / "m.prom"), ("manifest", tmp_path / "in" / "m.sqlite3"),
                          ("report_dir", tmp_path / "in" / "report")):
        with pytest.raises(ConfigError, match="must not be inside the input folder"):
            check_roles(Settings(input_dir=tmp_path / "in", out_dir=tmp_path / "out", **{option: value}))
    check_roles(Settings(input_dir=tmp_path / "in", out_dir=tmp_path / "out", metrics_file=tmp_path / "m.prom",
                         manifest=tmp_path / "m.sqlite3"))


def test_the_labels_are_followed_too(tmp_path: Path) -> None:
    for folder in ("images", "labels"):
        (tmp_path / folder).mkdir()
    yolo = Settings(input_dir=tmp_path / "images", out_dir=tmp_path / "out", masks_from=f"yolo:{tmp_path / 'labels'}")
    assert watched_folders(yolo) == [(tmp_path / "images").resolve(), (tmp_path / "labels").resolve()]
