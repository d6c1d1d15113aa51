"""README and configs stay true: every option they show exists, every command has help, exit codes match."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from batch_inpaint import cli
from batch_inpaint.exitcodes import ExitCode
from batch_inpaint.settings import load_config_file

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def help_text(*command: str) -> str:
    parser = cli.build_parser()
    if not command:
        return parser.format_help()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices[command[0]].format_help()  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", ["run", "plan", "watch", "status", "export", "report", "emulator"])
def test_every_command_has_help(command: str) -> None:
    assert f"usage: batch-inpaint {command}" in help_text(command)
    assert command in help_text()


def test_every_option_in_the_readme_exists() -> None:
    from benchmarks.run_all import build_parser as benchmark_parser

    known = (help_text("run") + help_text("watch") + help_text("emulator") + help_text("export") + help_text("status") + help_text("report")
             + benchmark_parser().format_help())
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", README))
    missing = sorted(o for o in options if o not in known and o not in ("--version",))
    assert missing == []


def test_the_readme_starts_with_the_two_set_up_commands() -> None:
    blocks = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    assert "batch-inpaint run sample_data/photos --masks sample_data/masks" in blocks[0]
    assert "--engine local" in blocks[0]
    assert "python -m pytest" in blocks[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest" in ci


def test_exit_codes_in_the_readme_match_the_library() -> None:
    table = dict(re.findall(r"^\| (\d+) \| (.+) \|$", README, re.M))
    assert {int(k) for k in table} == {int(c) for c in ExitCode if c is not ExitCode.TERMINATED}
    assert str(int(ExitCode.TERMINATED)) in table[str(int(ExitCode.INTERRUPTED))]


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_example_configs_load(config: Path) -> None:
    assert load_config_file(config)


def test_the_emulator_refuses_half_a_tls_set_up(tmp_path: Path) -> None:
    """--tls-cert without --tls-key used to serve plain HTTP without a word."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "batch_inpaint", "emulator", "--port", "0",
                           "--tls-cert", str(tmp_path / "cert.pem")], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "--tls-cert and --tls-key go together" in done.stderr


def test_the_readme_usage_is_the_help_usage() -> None:
    usage = help_text("run").splitlines()[0]
    block = README.split("## Usage", 1)[1].split("```")[1]
    assert usage in block.splitlines()


def test_help_shows_required_options_placeholders_examples_and_exit_codes() -> None:
    run, top = help_text("run"), help_text()
    assert run.startswith("usage: batch-inpaint run INPUT -o OUT ")  # required, so not in brackets
    for placeholder in ("MASK_THRESHOLD", "INCLUDE", "EXCLUDE", "OUT_DIR", "MASKS_DIR", "MAX_CREDITS"):
        assert placeholder not in run
    for text in (run, top):
        assert "examples:" in text and "exit codes:" in text
        for code in ExitCode:
            assert f"  {int(code):<4} " in text
    for flag in ("-o OUT, --out OUT", "-c FILE, --config FILE", "-q, --quiet", "-v, --verbose"):
        assert flag in run
    plan = help_text("plan")
    assert "--progress" not in plan and "--dry-run" not in plan and "--summary" not in plan
    assert "--retry-failed" in plan  # it changes what a run would do, so what the plan says
    for command in ("status", "export"):
        text = help_text(command)
        assert text.split("\n\n")[1].strip()  # a description
        assert "OUT  " in text or "OUT    " in text or "the output folder of a run" in text
    assert "csv (default) or jsonl" in help_text("export")


def test_run_without_arguments_prints_the_usage_and_what_is_missing() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "batch_inpaint", "run"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith("usage: batch-inpaint run INPUT -o OUT")
    assert "error: give an input folder (or --pairs FILE) and an output folder (-o OUT)" in done.stderr
    version = subprocess.run([sys.executable, "-m", "batch_inpaint", "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("batch-inpaint ")
