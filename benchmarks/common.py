"""Shared pieces of the benchmarks: the emulator in a subprocess, measured CLI runs, small statistics."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

WORK = Path(__file__).resolve().parent / ".work"


@dataclass
class Emulator:
    url: str
    log: Path

    def entries(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


@contextlib.contextmanager
def emulator(*args: str, keys: tuple[str, ...] = ("bench-key",), name: str = "emulator") -> Iterator[Emulator]:
    log = WORK / f"{name}.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    key_args = [a for key in keys for a in ("--key", f"{key}=100000000")]
    proc = subprocess.Popen([sys.executable, "-m", "batch_inpaint", "emulator", "--port", "0", "--log", str(log),
                             *key_args, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    try:
        yield Emulator(line.rsplit(" ", 1)[1].strip(), log)
    finally:
        proc.terminate()
        proc.wait()
        proc.stdout.close()


@dataclass
class Measured:
    seconds: float
    cpu: float
    max_rss_mb: float
    returncode: int
    stderr: str


_LAUNCHER = """
import json, os, sys
err = sys.argv[1]
pid = os.posix_spawn(sys.executable, [sys.executable, "-m", "batch_inpaint", *sys.argv[2:]], os.environ,
    file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                  (os.POSIX_SPAWN_OPEN, 2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)])
_, status, ru = os.wait4(pid, 0)
print(json.dumps([os.waitstatus_to_exitcode(status), ru.ru_utime + ru.ru_stime, ru.ru_maxrss]))
"""


def measured_cli(*args: str, env: dict[str, str] | None = None) -> Measured:
    """Run the CLI in a child and read that child's own CPU time and peak RSS from wait4.

    Through a tiny launcher process: a child started straight from this (big) benchmark process would
    count this process's pages in its peak RSS until its exec.
    """
    started = time.monotonic()
    err = WORK / "cli.stderr"
    # An installed package has its bytecode compiled (pip does it at install); where the environment
    # says not to write it, every run would compile the whole package again.
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run([sys.executable, "-c", _LAUNCHER, str(err), *args], capture_output=True, text=True,
                          env={**environ, **(env or {})}, check=True)
    code, cpu, max_rss_kb = json.loads(done.stdout)
    return Measured(time.monotonic() - started, cpu, max_rss_kb / 1024, code, err.read_text())


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"
