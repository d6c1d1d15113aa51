from pathlib import Path

import pytest

from batch_inpaint.errors import ConfigError
from batch_inpaint.settings import Settings, build_settings, resolve_api_key


def test_flags_beat_env_beat_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('rate = 30\nmode = "quality"\nengine = "local"\n')
    s = build_settings({"rate": 10.0}, config_file=config, env={"BATCH_INPAINT_RATE": "20", "BATCH_INPAINT_ENGINE": "clipdrop"})
    assert s.rate == 10.0 and s.mode == "quality" and s.engine == "clipdrop"


@pytest.mark.parametrize(
    "text, words",
    [("rate = \"fast\"\n", "key 'rate' must be a number"),
     ("ratee = 3\n", "unknown key 'ratee'"),
     ("api-key = \"sk-1\"\n", "CLIPDROP_API_KEY"),
     ("rate = [\n", "not valid TOML"),
     ("engine = \"gpu\"\n", "engine must be one of"),
     ("rate = 0\n", "rate must be a positive number"),
     ("concurrency = 2.7\n", "key 'concurrency' must be a whole number, not 2.7"),
     ("quality = true\n", "key 'quality' must be a whole number, not True"),
     ("rate = true\n", "key 'rate' must be a number, not True")],
)
def test_config_errors_name_the_file_and_key(tmp_path: Path, text: str, words: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as info:
        build_settings({}, config_file=config, env={})
    assert words in str(info.value)
    assert str(config) in str(info.value)  # every error names the file


def test_config_keys_are_the_options_names_and_paths_are_relative_to_the_file(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    config = folder / "job.toml"
    config.write_text('out = "cleaned"\nmasks = "m"\nmask = "/abs/logo.png"\nthreshold = 100\n'
                      'api-key-file = "~/key"\n')
    monkeypatch.chdir(tmp_path)  # elsewhere: the paths follow the file, not the working folder
    s = build_settings({}, config_file=config, env={})
    assert s.out_dir == folder / "cleaned" and s.masks_dir == folder / "m"
    assert s.mask_file == Path("/abs/logo.png") and s.mask_threshold == 100
    assert s.api_key_file == Path("~/key").expanduser()
    old_names = folder / "old.toml"
    old_names.write_text('out-dir = "o"\nmask-threshold = 90\n')  # the settings' own names still work
    s = build_settings({}, config_file=old_names, env={})
    assert s.out_dir == folder / "o" and s.mask_threshold == 90


def test_an_environment_value_out_of_range_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="environment BATCH_INPAINT_RATE: rate must be a positive number"):
        build_settings({}, env={"BATCH_INPAINT_RATE": "inf"})


def test_missing_key_is_a_config_error_and_key_file_is_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CLIPDROP_API_KEY"):
        resolve_api_key(Settings())
    key_file = tmp_path / "k"
    key_file.write_text("  sk-abc\n")
    assert resolve_api_key(Settings(api_key_file=key_file)) == "sk-abc"


def test_repr_never_shows_the_key() -> None:
    assert "sk-secret" not in repr(Settings(api_key="sk-secret"))


def test_default_concurrency_follows_the_rate() -> None:
    assert Settings(rate=60).workers == 32
    assert Settings(rate=6000).workers == 128
    assert Settings(rate=60, concurrency=3).workers == 3


@pytest.mark.parametrize("changes, expected", [
    ({}, "388bb92fbf518060"),
    ({"engine": "local"}, "b575f7291afbfb90"),
    ({"engine": "local", "local_method": "ns", "local_radius": 7, "output_format": "jpg", "quality": 80},
     "245033beee7e7be7"),
    ({"mode": "quality", "dilate": "15%", "resize_mask": True}, "76411982ce21768f"),
])
def test_settings_hashes_of_existing_manifests_still_match(changes: dict[str, object], expected: str) -> None:
    """The hashes the single-module pipeline recorded: a new layout must not make every done item due."""
    from batch_inpaint.runner import engine_shaping
    from batch_inpaint.settings import settings_hash

    settings = Settings(**changes)  # type: ignore[arg-type]
    assert settings_hash(settings, engine_shaping(settings)) == expected


def test_masks_from_in_a_config_file_is_relative_to_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from batch_inpaint.settings import load_config_file

    config = tmp_path / "jobs" / "dataset.toml"
    config.parent.mkdir()
    config.write_text('masks-from = "coco:annotations/instances.json"\nclasses = ["person", "logo"]\n')
    values = load_config_file(config)
    assert values["masks_from"] == f"coco:{tmp_path / 'jobs' / 'annotations' / 'instances.json'}"
    assert values["classes"] == ("person", "logo")
    config.write_text('masks-from = "yolo:/data/labels"\n')
    assert load_config_file(config)["masks_from"] == "yolo:/data/labels"
