"""The live display on a real terminal (a pty of 80 columns): a bar with its count and an ETA, one
counter, nothing cut to '…' and no 'None'."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from batch_inpaint.synthetic import write_tree

from ..conftest import cli_env

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_in_terminal(args: list[str], columns: int = 80, **env: str) -> tuple[int, list[str]]:
    """Run the CLI on a pty of ``columns`` columns; its return code and the frames it drew."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "batch_inpaint", *args], stdin=slave, stdout=slave, stderr=slave,
                            env=cli_env(TERM="xterm-256color", **env), close_fds=True)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    code = proc.wait(timeout=30)
    text = ANSI.sub("", b"".join(chunks).decode("utf-8", "replace"))
    frames = [f for f in re.split(r"[\r\n]+", text) if f.strip()]
    return code, frames


def test_the_bar_fits_80_columns_with_its_count_and_eta(emulator, tmp_path: Path) -> None:
    emu = emulator("--rate", "600", "--work", "stub")
    write_tree(tmp_path / "data", [f"img{i:02d}" for i in range(40)], size=(64, 48), seed=3)
    code, frames = run_in_terminal(["run", str(tmp_path / "data" / "photos"), "--masks", str(tmp_path / "data" / "masks"),
                                    "-o", str(tmp_path / "out"), "--api-url", emu.url, "--rate", "300"],
                                   CLIPDROP_API_KEY="test-key")
    assert code == 0, frames[-5:]
    bars = [f for f in frames if f.lstrip().startswith("inpainting")]
    assert bars, frames
    assert all(len(f.rstrip()) <= 80 for f in bars)
    assert any("━" in f for f in bars)
    assert any(re.search(r" \d+/40 ", f) for f in bars)  # one counter, out of the items due
    assert any(re.search(r"\b0:00:\d\d\b", f) for f in bars)  # an ETA
    assert any(re.search(r"\d+ ok · \d+/min · \d+ cr", f) for f in bars)
    assert not any("None" in f or "…" in f.replace("walking…", "") for f in frames)
