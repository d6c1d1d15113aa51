"""Cleaning a dataset by class from its annotations, end to end against the emulator: the masks drawn
are the objects grown by 15% of their size, the outputs are untouched outside them, and a change of
classes or of one annotation sends exactly the pictures whose mask changed."""

from __future__ import annotations

import json
from pathlib import Path

from ..conftest import CANARY_KEY, run_cli
from ..datasets import check_mask, coco_dataset, yolo_dataset
from .helpers import load_rgb


def check_output(photo: Path, mask: Path, output: Path) -> None:
    """The output is the whole picture, upright, every pixel outside the mask the original's, and the
    fill inside it the API's (not the original's). An EXIF-turned JPEG is sent turned and re-encoded
    (as any turned JPEG is), so outside its mask the output holds that JPEG's pixels: within 1 level."""
    import numpy as np
    from PIL import Image

    before, after = load_rgb(photo), load_rgb(output)
    assert before.shape == after.shape, f"{output}: {after.shape} is not {before.shape}"
    with Image.open(mask) as m:
        inside = np.asarray(m) == 255
    outside = np.abs(before - after)[~inside]
    with Image.open(photo) as im:
        turned = im.getexif().get(0x0112, 1) != 1
    assert (outside.mean() < 1.0 if turned else outside.max() == 0), f"{output}: pixels outside the mask changed"
    assert np.abs(before - after)[inside].mean() > 1.0, f"{output}: nothing changed inside the mask"


def _run(photos: Path, spec: str, out: Path, url: str, *extra: str):  # type: ignore[no-untyped-def]
    return run_cli("run", str(photos), "--masks-from", spec, "-o", str(out), "--api-url", url, "--rate", "600",
                   "--progress", "none", "--save-masks", str(out.parent / "masks-seen"), *extra, key=CANARY_KEY)


def test_coco_by_class_then_a_class_added_then_one_annotation_edited(emulator, tmp_path: Path) -> None:
    data = coco_dataset(tmp_path / "data")
    spec, out, seen = f"coco:{data.root / 'coco.json'}", tmp_path / "out", tmp_path / "masks-seen"
    api = emulator(key=CANARY_KEY)

    plan = run_cli("plan", str(data.photos), "--masks-from", spec, "--classes", "person", "-o", str(out))
    assert plan.returncode == 0 and "person: 4 objects in 4 pictures, 4 credits" in plan.stdout, plan.stdout
    first = _run(data.photos, spec, out, api.url, "--classes", "person")
    assert first.returncode == 0, first.stderr
    assert api.charged() == 4 and "c.jpg: no object of the chosen classes" in first.stderr
    for key in ("a.jpg", "b.jpg", "sub/d.jpg", "sub/e.jpg"):
        mask = seen / key.replace(".jpg", ".png")
        check_mask(mask, data.expected(key, {"person"}), key)
        check_output(data.photos / key, mask, out / key.replace(".jpg", ".png"))  # untouched outside the mask
    assert not (out / "c.png").exists()

    again = _run(data.photos, spec, out, api.url, "--classes", "person,car")
    assert again.returncode == 0 and api.charged() == 4 + 2, again.stderr  # b (a crowd of cars) and c
    check_mask(seen / "b.png", data.expected("b.jpg", {"person", "car"}), "b.jpg")
    check_output(data.photos / "c.jpg", seen / "c.png", out / "c.png")

    coco = json.loads((data.root / "coco.json").read_text())
    coco["annotations"][5]["bbox"] = [90, 80, 80, 60]  # sub/d's person, drawn again 10 px to the left
    (data.root / "coco.json").write_text(json.dumps(coco))
    edited = _run(data.photos, spec, out, api.url, "--classes", "person,car")
    assert edited.returncode == 0 and api.charged() == 7, edited.stderr
    assert "5 images seen: 1 done, 4 already done" in edited.stderr
    assert CANARY_KEY not in first.stderr + again.stderr + edited.stderr


def test_yolo_labels_with_their_class_names(emulator, tmp_path: Path) -> None:
    data = yolo_dataset(tmp_path / "data")
    out, seen = tmp_path / "out", tmp_path / "masks-seen"
    api = emulator(key=CANARY_KEY)
    result = _run(data.photos, f"yolo:{data.root / 'labels'}", out, api.url, "--classes", "person,logo")
    assert result.returncode == 0, result.stderr
    assert api.charged() == 3  # a, b, sub/d; c has no label file and b's car is not chosen
    for key in ("a.jpg", "b.jpg", "sub/d.jpg"):
        mask = seen / key.replace(".jpg", ".png")
        check_mask(mask, data.expected(key, {"person", "logo"}), key)
        check_output(data.photos / key, mask, out / key.replace(".jpg", ".png"))


def test_a_broken_annotation_fails_its_image_only_and_names_it(emulator, tmp_path: Path) -> None:
    data = coco_dataset(tmp_path / "data")
    coco = json.loads((data.root / "coco.json").read_text())
    coco["annotations"][1]["bbox"] = [300, 30, 60, 40]  # a's logo runs off the right edge
    (data.root / "coco.json").write_text(json.dumps(coco))
    api = emulator(key=CANARY_KEY)
    result = _run(data.photos, f"coco:{data.root / 'coco.json'}", tmp_path / "out", api.url)
    assert result.returncode == 1
    assert "invalid: a.jpg: " in result.stderr and "coco.json: annotation 2: lies outside the 320x240 image" in result.stderr
    assert api.charged() == 4  # every other picture
    wrong = run_cli("run", str(data.photos), "--masks-from", f"coco:{data.root / 'coco.json'}", "--classes", "dog",
                    "-o", str(tmp_path / "out2"), key=CANARY_KEY)
    assert wrong.returncode == 2 and "no class 'dog'" in wrong.stderr
