"""The emulator's modules import in one direction: config <- app <- server <- cli, never back."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module, must_not_load", [
    ("batch_inpaint.emulator.app", "batch_inpaint.emulator.cli"),
    ("batch_inpaint.emulator.config", "batch_inpaint.emulator.app"),
    ("batch_inpaint.emulator.requestlog", "batch_inpaint.emulator.app"),
])
def test_emulator_modules_do_not_import_each_other_in_a_circle(module: str, must_not_load: str) -> None:
    code = f"import sys, {module}; print({must_not_load!r} in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "False"
