"""Photos, masks and results in buckets: moto's S3 server on 127.0.0.1, the emulator, real runs."""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from batch_inpaint.locations import bucket_state_dir
from batch_inpaint.buckets import BucketPath
from batch_inpaint.synthetic import png_bytes, scene, write_tree

from .. import corpus
from ..conftest import run_cli, start_cli, wait_for
from ..s3 import REFUSED_KEY, SECRET
from .helpers import check_output, pairs_of


def make_buckets(s3, *names: str) -> None:  # type: ignore[no-untyped-def]
    client = s3.client()
    for name in names:
        client.create_bucket(Bucket=name)


def run(*args: str, url: str, **env: str):  # type: ignore[no-untyped-def]
    return run_cli("run", *args, "--api-url", url, "--progress", "lines", "--rate", "1200", key="test-key", **env)


def fetch(s3, bucket: str, key: str, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path / "fetched" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(s3.get(bucket, key))
    return path


def no_secret(*texts: str, folder: Path | None = None) -> None:
    for text in texts:
        assert SECRET not in text
    for path in folder.rglob("*") if folder is not None else ():
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_a_tree_in_buckets_comes_out_whole_and_a_rerun_pays_nothing(s3, emulator, photos: Path,
                                                                     tmp_path: Path) -> None:
    """Photos and masks under two prefixes of one bucket, results to another: every output correct, the
    tree mirrored; a re-run sends nothing; the same bytes uploaded again cost nothing; an edited mask
    is the one item sent again."""
    make_buckets(s3, "data", "results")
    s3.upload("data", "set/photos", photos / "photos")
    s3.upload("data", "set/masks", photos / "masks")
    emu = emulator()
    args = ("s3://data/set/photos", "--masks", "s3://data/set/masks", "--out", "s3://results/clean")
    first = run(*args, url=emu.url)
    assert first.returncode == 0, first.stderr
    assert emu.charged() == 8 and "8 done" in first.stderr
    expected = sorted(f"clean/{rel}" for _, _, rel in pairs_of(photos))
    assert s3.keys("results") == expected
    for photo, mask, rel in pairs_of(photos):
        check_output(photo, mask, fetch(s3, "results", f"clean/{rel}", tmp_path))

    again = run(*args, url=emu.url)
    assert again.returncode == 0 and "8 already done" in again.stderr and len(emu.entries()) == 8

    client = s3.client()
    client.put_object(Bucket="data", Key="set/masks/a.png", Body=(photos / "masks" / "a.png").read_bytes())
    edited = io.BytesIO()
    with Image.open(photos / "masks" / "sub" / "f.png") as m:
        m = m.copy()
    ImageDraw.Draw(m).rectangle((0, 0, 20, 20), fill=255)
    m.save(edited, "PNG")
    client.put_object(Bucket="data", Key="set/masks/sub/f.png", Body=edited.getvalue())
    third = run(*args, url=emu.url)
    assert third.returncode == 0, third.stderr
    assert len(emu.entries()) == 9 and "1 done" in third.stderr and "7 already done" in third.stderr

    state = bucket_state_dir(BucketPath("s3://results/clean"))
    assert (state / "manifest.sqlite3").is_file() and (state / "report" / "index.html").is_file()
    assert str(state / "report" / "index.html") in first.stderr
    rows = sqlite3.connect(state / "manifest.sqlite3").execute("SELECT image_path, mask_path FROM items").fetchall()
    assert ("s3://data/set/photos/sub/f.jpg", "s3://data/set/masks/sub/f.png") in rows
    status = run_cli("status", "s3://results/clean")
    assert status.returncode == 0 and "done 8" in status.stdout
    no_secret(first.stdout, first.stderr, third.stderr, status.stdout, folder=state)


def test_exif_and_icc_travel_with_the_object(s3, emulator, tmp_path: Path) -> None:
    make_buckets(s3, "data")
    client = s3.client()
    client.put_object(Bucket="data", Key="photos/icc.jpg", Body=corpus.icc_jpeg())
    client.put_object(Bucket="data", Key="masks/icc.png", Body=corpus.mask_png())
    emu = emulator()
    result = run("s3://data/photos", "--masks", "s3://data/masks", "--out", "s3://data/cleaned",
                 "--output-format", "jpg", url=emu.url)
    assert result.returncode == 0, result.stderr
    assert s3.client().head_object(Bucket="data", Key="cleaned/icc.jpg")["ContentType"] == "image/jpeg"
    with Image.open(io.BytesIO(s3.get("data", "cleaned/icc.jpg"))) as im:
        assert im.info.get("icc_profile") and im.getexif().get(0x010F) == "CorpusCam"


def test_mixed_local_photos_to_a_bucket_and_bucket_photos_to_a_folder(s3, emulator, photos: Path,
                                                                      tmp_path: Path) -> None:
    make_buckets(s3, "data", "results")
    emu = emulator()
    up = run(str(photos / "photos"), "--masks", str(photos / "masks"), "--out", "s3://results/from-disk",
             url=emu.url)
    assert up.returncode == 0, up.stderr
    assert len(s3.keys("results", "from-disk/")) == 8
    assert not (photos / "photos" / ".batch-inpaint").exists()

    s3.upload("data", "photos", photos / "photos")
    down = run("s3://data/photos", "--masks", str(photos / "masks"), "--out", str(tmp_path / "local-out"),
               url=emu.url)
    assert down.returncode == 0, down.stderr
    for photo, mask, rel in pairs_of(photos):
        check_output(photo, mask, tmp_path / "local-out" / rel)
    assert (tmp_path / "local-out" / ".batch-inpaint" / "manifest.sqlite3").is_file()
    assert emu.charged() == 16


def test_a_pairs_list_in_a_bucket(s3, emulator, photos: Path, tmp_path: Path) -> None:
    make_buckets(s3, "data")
    s3.upload("data", "set", photos)
    lines = "image,mask\nphotos/a.jpg,masks/a.png\ns3://data/set/photos/b.jpg,s3://data/set/masks/b.png\n"
    s3.client().put_object(Bucket="data", Key="set/pairs.csv", Body=lines.encode())
    emu = emulator()
    result = run("--pairs", "s3://data/set/pairs.csv", "--out", str(tmp_path / "out"), url=emu.url)
    assert result.returncode == 0, result.stderr
    check_output(photos / "photos" / "a.jpg", photos / "masks" / "a.png", tmp_path / "out" / "photos" / "a.png")
    check_output(photos / "photos" / "b.jpg", photos / "masks" / "b.png",
                 tmp_path / "out" / "set" / "photos" / "b.png")


def test_odd_keys_and_an_object_that_is_no_picture(s3, emulator, tmp_path: Path) -> None:
    """Keys with spaces, accents, plus signs, percent and hash signs pair and mirror as they are; a
    text object named .jpg is invalid, named with its URL, and the rest go on."""
    make_buckets(s3, "data", "results")
    client = s3.client()
    names = ["a photo.jpg", "café+crème.jpg", "100%#1.jpg", "sub dir/x&y=z.jpg"]
    for i, name in enumerate(names):
        picture, mask = scene(160, 120, i)
        buf = io.BytesIO()
        picture.save(buf, "JPEG")
        client.put_object(Bucket="data", Key=f"in/{name}", Body=buf.getvalue())
        client.put_object(Bucket="data", Key=f"in/{name[:-4]}_mask.png", Body=png_bytes(mask))
    client.put_object(Bucket="data", Key="in/notes.jpg", Body=b"this is not a picture")
    client.put_object(Bucket="data", Key="in/notes_mask.png", Body=png_bytes(scene(160, 120, 9)[1]))
    emu = emulator()
    result = run("s3://data/in", "--out", "s3://results/out", url=emu.url)
    assert result.returncode == 1, result.stderr
    assert "notes.jpg" in result.stderr and "4 done" in result.stderr and "1 invalid" in result.stderr
    assert s3.keys("results") == sorted(f"out/{name[:-4]}.png" for name in names)
    assert emu.charged() == 4
    export = run_cli("export", "s3://results/out", "--format", "jsonl")
    assert "s3://data/in/notes.jpg" in export.stdout


def test_a_missing_bucket_and_refused_credentials_stop_before_any_request(s3, emulator, photos: Path,
                                                                          tmp_path: Path) -> None:
    make_buckets(s3, "data", "results")
    s3.upload("data", "photos", photos / "photos")
    s3.upload("data", "masks", photos / "masks")
    emu = emulator()
    no_input = run("s3://nosuchbucket/photos", "--masks", "s3://data/masks", "--out", "s3://results/o", url=emu.url)
    assert no_input.returncode == 2
    assert "s3://nosuchbucket/photos: input folder cannot be read: no such bucket" in no_input.stderr
    no_output = run("s3://data/photos", "--masks", "s3://data/masks", "--out", "s3://gone/o", url=emu.url)
    assert no_output.returncode == 2
    assert "s3://gone/o: the results cannot be written there: no such bucket (nothing was sent)" in no_output.stderr
    empty = run("s3://data/nothing-here", "--masks", "s3://data/masks", "--out", "s3://results/o", url=emu.url)
    assert empty.returncode == 2 and "s3://data/nothing-here: input folder not found" in empty.stderr
    refused = run("s3://data/photos", "--masks", "s3://data/masks", "--out", "s3://results/o", url=emu.url,
                  **s3.env(proxy=True, key=REFUSED_KEY))
    assert refused.returncode == 2
    assert "s3://data/photos: input folder cannot be read: access denied (the credentials were refused)" in \
        refused.stderr
    assert emu.entries() == []
    no_secret(no_input.stderr, no_output.stderr, refused.stderr, refused.stdout)


def test_a_store_that_says_slow_down_is_asked_again_and_no_credit_is_paid_twice(s3, emulator, photos: Path,
                                                                                tmp_path: Path) -> None:
    make_buckets(s3, "data", "results")
    s3.upload("data", "photos", photos / "photos")
    s3.upload("data", "masks", photos / "masks")
    s3.faults.slow_puts, s3.faults.slow_lists = 12, 2
    emu = emulator()
    result = run("s3://data/photos", "--masks", "s3://data/masks", "--out", "s3://results/o", url=emu.url,
                 **s3.env(proxy=True))
    assert result.returncode == 0, result.stderr
    assert s3.faults.throttled == 14 and emu.charged() == 8
    assert len(s3.keys("results")) == 8


@pytest.mark.slow
def test_killed_mid_run_it_resumes_with_no_partial_object_and_pays_once(s3, emulator, tmp_path: Path) -> None:
    """kill -9 while results are being written: every object there is a whole picture, and the run that
    follows finishes the job, paying again only for what was in flight."""
    data = tmp_path / "data"
    write_tree(data, [f"d{i % 3}/p{i:03d}" for i in range(60)], size=(320, 240), seed=5)
    make_buckets(s3, "data", "results")
    s3.upload("data", "photos", data / "photos")
    s3.upload("data", "masks", data / "masks")
    emu = emulator("--latency-mean", "0.2", "--rate", "100000")
    args = ("run", "s3://data/photos", "--masks", "s3://data/masks", "--out", "s3://results/o", "--api-url", emu.url,
            "--rate", "600", "--concurrency", "4", "--progress", "lines")
    proc = start_cli(*args, key="test-key")
    assert wait_for(lambda: len(s3.keys("results")) >= 15, timeout=120)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for key in s3.keys("results"):
        with Image.open(io.BytesIO(s3.get("results", key))) as im:
            im.load()
    charged_before = emu.charged()
    assert charged_before < 60
    resumed = run_cli(*args, key="test-key")
    assert resumed.returncode == 0, resumed.stderr
    for photo, mask, rel in pairs_of(data):
        check_output(photo, mask, fetch(s3, "results", f"o/{rel}", tmp_path))
    assert 60 <= emu.charged() <= 60 + 4
    time.sleep(0)


def test_storage_options_reach_the_store_and_stay_secret(s3, emulator, photos: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """No AWS variables at all: the endpoint and the credentials come from --storage-option, and the secret
    shows nowhere (output, manifest, report)."""
    make_buckets(s3, "data", "results")
    s3.upload("data", "photos", photos / "photos")
    s3.upload("data", "masks", photos / "masks")
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    emu = emulator()
    options = ("--storage-option", f"endpoint_url={s3.url}", "--storage-option", "key=testing",
               "--storage-option", f"secret={SECRET}")
    result = run("s3://data/photos", "--masks", "s3://data/masks", "--out", "s3://results/o", *options,
                 "--log-format", "json", url=emu.url)
    assert result.returncode == 0, result.stderr
    assert len(s3.keys("results")) == 8 and '"secret=***"' in result.stderr
    no_secret(result.stdout, result.stderr, folder=bucket_state_dir(BucketPath("s3://results/o")))
    bare = run("s3://data/photos", "--masks", "s3://data/masks", "--out", "s3://results/o",
               "--storage-option", f"endpoint_url={s3.url}", url=emu.url)
    assert bare.returncode == 2 and "no credentials were found" in bare.stderr


@pytest.mark.postgres
@pytest.mark.slow
def test_a_fleet_shares_a_job_on_buckets_with_no_disk_in_common(s3, emulator, postgres, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Three workers, each with a state folder of its own, photos and results in buckets: every picture
    paid once, every output there; the job is named by the output's URL, the same on every host."""
    import json
    import sys
    from collections import Counter

    from ..conftest import cli_env, spawn
    from ..postgres import PG_PASSWORD

    data = tmp_path / "data"
    write_tree(data, [f"d{i % 4}/p{i:03d}" for i in range(90)], size=(64, 48), seed=8)
    make_buckets(s3, "data", "results")
    s3.upload("data", "photos", data / "photos")
    s3.upload("data", "masks", data / "masks")
    emu = emulator("--rate", "100000")
    procs = []
    for i in range(3):
        state = tmp_path / f"host{i}"
        state.mkdir()
        cmd = [sys.executable, "-m", "batch_inpaint", "run", "s3://data/photos", "--masks", "s3://data/masks",
               "--out", "s3://results/job", "--api-url", emu.url, "--rate", "1200", "--progress", "lines",
               "--summary", "json", "--no-report"]
        procs.append(spawn(cmd, cli_env("test-key", BATCH_INPAINT_MANIFEST=postgres.url, XDG_STATE_HOME=str(state))))
    ended = [(proc.wait(timeout=300), proc.communicate()) for proc in procs]
    assert [code for code, _ in ended] == [0, 0, 0], [err[-1500:] for _, (_, err) in ended]
    done = [json.loads(out)["counts"]["done"] for _, (out, _) in ended]
    assert sum(done) == 90 and min(done) >= 5, done
    charged = Counter(e["image"] for e in emu.entries() if e["charged"])
    assert len(charged) == 90 and set(charged.values()) == {1}
    assert len(s3.keys("results", "job/")) == 90
    shown = run_cli("status", "s3://results/job", "--manifest", postgres.url)
    assert shown.returncode == 0 and "items: done 90" in shown.stdout
    for _, (out, err) in ended:
        assert PG_PASSWORD not in out + err and SECRET not in out + err


def test_a_new_host_takes_the_results_in_the_bucket_as_done_when_told(s3, emulator, photos: Path,
                                                                      state_home: Path) -> None:
    """The manifest of a bucket output lives on the host: lost, a run would pay again, unless
    --adopt-existing takes the results already in the bucket as done (plan says so first)."""
    import shutil

    make_buckets(s3, "data", "results")
    s3.upload("data", "photos", photos / "photos")
    s3.upload("data", "masks", photos / "masks")
    emu = emulator()
    args = ("s3://data/photos", "--masks", "s3://data/masks", "--out", "s3://results/o")
    assert run(*args, url=emu.url).returncode == 0 and emu.charged() == 8
    shutil.rmtree(bucket_state_dir(BucketPath("s3://results/o")))
    plan = run_cli("plan", *args, "--adopt-existing", "--api-url", emu.url, key="test-key")
    assert plan.returncode == 0 and "taken as done (no request; --force redoes them): 8" in plan.stdout, plan.stdout
    adopted = run(*args, "--adopt-existing", url=emu.url)
    assert adopted.returncode == 0, adopted.stderr
    assert len(emu.entries()) == 8
    again = run(*args, url=emu.url)
    assert again.returncode == 0 and "8 already done" in again.stderr and len(emu.entries()) == 8


def test_a_prefix_is_listed_in_sorted_pages_as_it_comes(s3) -> None:  # type: ignore[no-untyped-def]
    """2,100 keys and a hidden one under a prefix, three sub-prefixes: pages of at most 1,000 in the
    store's order; a prefix holding only sub-prefixes is a folder, found with one small request."""
    make_buckets(s3, "data")
    client = s3.client()
    names = [f"k{i:05d} é.jpg" for i in range(2100)]
    for name in names:
        client.put_object(Bucket="data", Key=f"flat/{name}", Body=b"x")
    client.put_object(Bucket="data", Key="flat/.hidden.jpg", Body=b"x")
    for sub in ("a", "b", "c"):
        client.put_object(Bucket="data", Key=f"nested/{sub}/x.jpg", Body=b"xyz")
    pages = list(BucketPath("s3://data/flat").pages())
    assert len(pages) == 3 and all(len(page) <= 1000 for page in pages)  # the hidden key is left out of one
    assert [entry.name for page in pages for entry in page] == names
    assert all(entry.size == 1 and entry.tag for page in pages for entry in page)
    nested = BucketPath("s3://data/nested")
    assert nested.is_dir() and not BucketPath("s3://data/none").is_dir()
    assert [(e.name, e.folder) for page in nested.pages() for e in page] == [("a", True), ("b", True), ("c", True)]
    assert (nested / "a" / "x.jpg").signature()[0] == 3 and (nested / "a" / "x.jpg").is_file()


def test_the_run_lock_follows_the_manifest(s3, emulator, photos: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A bucket output's lock is beside its manifest: the state folder's, or the file --manifest names,
    which hosts sharing that file then share too."""
    from batch_inpaint.runlock import RunLock
    from batch_inpaint.settings import build_settings

    make_buckets(s3, "data", "results")
    s3.upload("data", "photos", photos / "photos")
    s3.upload("data", "masks", photos / "masks")
    emu = emulator()
    shared = tmp_path / "shared" / "job.sqlite3"
    args = ("s3://data/photos", "--masks", "s3://data/masks", "--out", "s3://results/o")
    for manifest in (None, shared):
        settings = build_settings({"out_dir": "s3://results/o", "manifest": manifest})
        expected = shared.with_name("job.sqlite3.lock") if manifest else \
            bucket_state_dir(BucketPath("s3://results/o")) / "run.lock"
        assert settings.lock_path == expected
        extra = ("--manifest", str(manifest)) if manifest else ()
        with RunLock(settings.lock_path):
            held = run(*args, *extra, url=emu.url)
        assert held.returncode == 5 and "another batch-inpaint run" in held.stderr
    assert emu.entries() == []
    assert run(*args, "--manifest", str(shared), url=emu.url).returncode == 0 and shared.is_file()


def test_a_bucket_that_stops_taking_results_stops_the_run_before_more_is_paid(s3, emulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Writes refused mid-run (a role's permission taken away): the result paid for is failed with the
    reason, nothing more is sent, the rest stay pending for the next run, which finishes the job."""
    data = tmp_path / "data"
    write_tree(data, [f"p{i:02d}" for i in range(30)], size=(64, 48), seed=2)
    make_buckets(s3, "data", "results")
    s3.upload("data", "photos", data / "photos")
    s3.upload("data", "masks", data / "masks")
    s3.faults.deny_puts_from = 6  # the probe, then four results
    emu = emulator()
    args = ("s3://data/photos", "--masks", "s3://data/masks", "--out", "s3://results/o", "--concurrency", "1")
    stopped = run(*args, url=emu.url, **s3.env(proxy=True))
    assert stopped.returncode == 6, stopped.stderr
    assert "cannot write s3://results/o/" in stopped.stderr and "access denied" in stopped.stderr
    assert emu.charged() == 5 and len(s3.keys("results")) == 4  # the fifth was paid for, then refused
    s3.faults.deny_puts_from = 0
    resumed = run(*args, url=emu.url, **s3.env(proxy=True))
    assert resumed.returncode == 0, resumed.stderr
    assert len(s3.keys("results")) == 30 and emu.charged() == 31


def test_watch_refuses_a_bucket_and_says_what_to_do_instead(tmp_path: Path) -> None:
    result = run_cli("watch", "s3://data/photos", "-o", str(tmp_path / "out"), "--engine", "local")
    assert result.returncode == 2
    assert "s3://data/photos: watch needs local input folders" in result.stderr
    assert "docs/scheduling.md" in result.stderr and (Path(__file__).parents[2] / "docs" / "scheduling.md").is_file()
