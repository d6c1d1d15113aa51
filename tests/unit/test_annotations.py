"""Masks from annotations: every object of the chosen classes drawn and grown by its own size, in the
upright frame; the mask's signature moves only for the images whose mask changes; each mistake in
the annotations named with its file, annotation or line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batch_inpaint.annotations import load
from batch_inpaint.errors import ConfigError
from batch_inpaint.pairing import PairingRules
from batch_inpaint.preflight import PreflightOptions, prepare
from batch_inpaint.settings import Settings

from ..datasets import Dataset, check_mask, coco_dataset, yolo_dataset

RULES = PairingRules()


def _settings(data: Dataset, spec: str, *classes: str) -> Settings:
    return Settings(input_dir=data.photos, out_dir=data.root / "out", masks_from=spec, classes=classes)


def _prepared(settings: Settings) -> dict[str, object]:
    options = PreflightOptions.from_settings(settings)
    assert options.annotations is not None
    return {pair.key: prepare(pair, options) for pair in options.annotations.pairs(settings.input_dir, RULES)}


def test_coco_polygons_rle_boxes_and_crowds_each_grown_by_their_own_size(tmp_path: Path) -> None:
    data = coco_dataset(tmp_path)
    prepared = _prepared(_settings(data, f"coco:{tmp_path / 'coco.json'}"))
    assert sorted(prepared) == ["a.jpg", "b.jpg", "c.jpg", "sub/d.jpg", "sub/e.jpg"]
    for key, item in prepared.items():
        assert item.size == (320, 240)  # upright, the EXIF-turned ones too
        check_mask(item.mask_png, data.expected(key), key)


def test_only_the_chosen_classes_and_an_image_without_any_sends_nothing(tmp_path: Path) -> None:
    data = coco_dataset(tmp_path)
    prepared = _prepared(_settings(data, f"coco:{tmp_path / 'coco.json'}", "person", "2"))  # a name and an id
    assert prepared["c.jpg"].empty_mask  # a car only
    for key, item in prepared.items():
        if key != "c.jpg":
            check_mask(item.mask_png, data.expected(key, {"person", "logo"}), key)  # b's crowd of cars left out


def test_yolo_boxes_and_polygons_in_the_upright_frame(tmp_path: Path) -> None:
    data = yolo_dataset(tmp_path)
    prepared = _prepared(_settings(data, f"yolo:{tmp_path / 'labels'}"))
    assert sorted(prepared) == ["a.jpg", "b.jpg", "c.jpg", "sub/d.jpg"]
    assert prepared["c.jpg"].empty_mask  # no label file: no object
    for key, item in prepared.items():
        if not item.empty_mask:
            check_mask(item.mask_png, data.expected(key), key)


def test_a_class_change_or_one_edited_annotation_moves_exactly_the_masks_it_changes(tmp_path: Path) -> None:
    data = coco_dataset(tmp_path)
    spec = f"coco:{tmp_path / 'coco.json'}"

    def signatures(*classes: str) -> dict[str, int]:
        annotations = load(spec, classes=classes)
        return {p.key: p.mask_sig.mtime_ns for p in annotations.pairs(data.photos, RULES)}  # type: ignore[union-attr]

    person = signatures("person")
    with_car = signatures("person", "car")
    assert {k for k in person if person[k] != with_car[k]} == {"b.jpg", "c.jpg"}
    coco = json.loads((tmp_path / "coco.json").read_text())
    coco["annotations"][5]["bbox"] = [90, 80, 80, 60]  # sub/d's person moved
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    moved = signatures("person")
    assert {k for k in person if person[k] != moved[k]} == {"sub/d.jpg"}


def test_what_stops_every_image_is_a_usage_error_naming_the_file(tmp_path: Path) -> None:
    data = coco_dataset(tmp_path)
    with pytest.raises(ConfigError, match=r"coco\.json: no class 'people'.*1: person, 2: logo, 3: car"):
        load(f"coco:{tmp_path / 'coco.json'}", classes=("people",))
    (tmp_path / "broken.json").write_text('{"images": [')
    with pytest.raises(ConfigError, match=r"broken\.json: not a COCO JSON file"):
        load(f"coco:{tmp_path / 'broken.json'}")
    with pytest.raises(ConfigError, match=r"missing\.json: COCO annotation file not found"):
        load(f"coco:{tmp_path / 'missing.json'}")
    with pytest.raises(ConfigError, match=r"classes\.txt: cannot read the class names.*--yolo-names"):
        load(f"yolo:{data.photos}")


def test_what_is_wrong_with_one_image_is_that_images_problem_naming_the_annotation(tmp_path: Path) -> None:
    data = coco_dataset(tmp_path)
    coco = json.loads((tmp_path / "coco.json").read_text())
    coco["annotations"][0]["segmentation"] = [[10, 10, 400, 10, 200, 100]]  # past the right edge of a.jpg
    coco["annotations"][4]["category_id"] = 99  # c.jpg
    coco["annotations"].append({"id": 8, "image_id": 77, "category_id": 1, "bbox": [1, 1, 5, 5]})
    coco["images"].append({"id": 6, "file_name": "gone.jpg", "width": 320, "height": 240})
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    options = PreflightOptions.from_settings(_settings(data, f"coco:{tmp_path / 'coco.json'}"))
    annotations = options.annotations
    assert annotations is not None
    assert annotations.orphans == [f"{tmp_path / 'coco.json'}: annotation 8: no image with id 77"]
    pairs = {p.key: p for p in annotations.pairs(data.photos, RULES)}
    assert pairs["c.jpg"].problem == f"{tmp_path / 'coco.json'}: annotation 5: no category with id 99"
    assert pairs["gone.jpg"].problem is not None and "image id 6 (gone.jpg): the image cannot be read" in pairs["gone.jpg"].problem
    from batch_inpaint.errors import InvalidInput

    with pytest.raises(InvalidInput, match=r"coco\.json: annotation 1: lies outside the 320x240 image"):
        prepare(pairs["a.jpg"], options)
    check_mask(prepare(pairs["b.jpg"], options).mask_png, data.expected("b.jpg"), "b.jpg")  # the rest goes on


def test_a_bad_yolo_line_is_named_with_its_file_and_line(tmp_path: Path) -> None:
    data = yolo_dataset(tmp_path)
    labels = tmp_path / "labels"
    (labels / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.1 0.1\n")
    (labels / "b.txt").write_text("0 0.5 0.5 0.2\n")
    (labels / "sub" / "d.txt").write_text("1 1.5 0.5 0.2 0.2\n")
    annotations = load(f"yolo:{labels}")
    pairs = {p.key: p for p in annotations.pairs(data.photos, RULES)}
    assert pairs["a.jpg"].problem == f"{labels / 'a.txt'}: line 2: no class 7 in the class names"
    assert pairs["b.jpg"].problem == (f"{labels / 'b.txt'}: line 1: 3 numbers after the class: 4 for a box, "
                                      "6 or more for a polygon")
    assert pairs["sub/d.jpg"].problem is not None and "line 1: lies outside the image" in pairs["sub/d.jpg"].problem
    assert pairs["c.jpg"].problem is None


def test_yolo_names_from_a_data_yaml(tmp_path: Path) -> None:
    data = yolo_dataset(tmp_path)
    (tmp_path / "labels" / "classes.txt").unlink()
    (tmp_path / "data.yaml").write_text("names:\n  0: person\n  1: logo\n  2: car\n")
    annotations = load(f"yolo:{tmp_path / 'labels'}", classes=("car",), names_file=tmp_path / "data.yaml")
    found = {p.key: annotations.objects(annotations.entry(p.key)) for p in annotations.pairs(data.photos, RULES)}
    assert [s.category for s in found["b.jpg"]] == ["car"] and found["a.jpg"] == []


def test_dilate_overrides_the_growth_for_every_object(tmp_path: Path) -> None:
    data = coco_dataset(tmp_path)
    settings = Settings(input_dir=data.photos, out_dir=tmp_path / "out", masks_from=f"coco:{tmp_path / 'coco.json'}",
                        dilate="3")
    options = PreflightOptions.from_settings(settings)
    assert options.annotations is not None and options.dilate is None  # grown once, per object, not again
    pair = next(p for p in options.annotations.pairs(data.photos, RULES) if p.key == "b.jpg")
    check_mask(prepare(pair, options).mask_png, data.expected("b.jpg"), "b.jpg", radius=3)
    with pytest.raises(AssertionError, match="not grown by 5 px"):  # the check does see a wrong growth
        check_mask(prepare(pair, options).mask_png, data.expected("b.jpg"), "b.jpg", radius=5)


def test_mending_an_images_problem_makes_it_due_again(tmp_path: Path) -> None:
    data = coco_dataset(tmp_path)
    spec = f"coco:{tmp_path / 'coco.json'}"
    coco = json.loads((tmp_path / "coco.json").read_text())
    coco["images"].append({"id": 9, "file_name": "a.jpg", "width": 320, "height": 240})  # listed twice
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    before = {p.key: p for p in load(spec).pairs(data.photos, RULES)}
    assert before["a.jpg"].problem is not None and "listed twice" in before["a.jpg"].problem
    coco["images"].pop()
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    after = {p.key: p for p in load(spec).pairs(data.photos, RULES)}
    assert after["a.jpg"].problem is None and after["a.jpg"].mask_sig != before["a.jpg"].mask_sig
    assert after["b.jpg"].mask_sig == before["b.jpg"].mask_sig


def test_two_images_of_one_stem_keep_outputs_of_their_own(tmp_path: Path) -> None:
    data = yolo_dataset(tmp_path)
    (data.photos / "a.png").write_bytes(b"not looked at here")
    bases = {p.key: p.output_base for p in load(f"yolo:{tmp_path / 'labels'}").pairs(data.photos, RULES)}
    assert bases["a.jpg"] == "a.jpg" and bases["a.png"] == "a.png" and bases["b.jpg"] == "b"
    assert bases["sub/d.jpg"] == "sub/d"
