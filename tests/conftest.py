"""Shared fixtures: the emulator as a real subprocess on 127.0.0.1, sample trees, the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

import looptime
import pytest

from batch_inpaint.emulator.requestlog import busiest_window, read_log
from batch_inpaint.synthetic import write_tree

if TYPE_CHECKING:
    from tests.postgres import Postgres

CANARY_KEY = "sk-canary-0d9f1e2c3b4a5968"
F = TypeVar("F", bound=Callable[..., Any])


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], Any]]:
    """Every async test gets a loop that can run on fake time; `fake_time` turns it on for one test."""
    return {"asyncio": lambda: looptime.new_event_loop(_enabled=False)}  # as looptime's own plugin makes them


def fake_time(test: F) -> F:
    """An async test on fake loop time: sleeps and timers take no real time. Work in anyio's worker
    threads is not seen by looptime, so a test on fake time asserts bounds that a jump cannot break."""
    return pytest.mark.asyncio(looptime.enabled(strict=True)(test))  # type: ignore[no-any-return]


@dataclass
class Emulator:
    url: str
    log: Path
    process: subprocess.Popen[str]

    def entries(self) -> list[dict]:
        return read_log(self.log)

    def charged(self) -> int:
        return sum(1 for e in self.entries() if e.get("charged"))

    def busiest_minute(self) -> int:
        return busiest_window(e["t"] for e in self.entries() if e.get("key"))


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator["EmulatorFactory"]:
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, key: str = "test-key", credits: int = 100000) -> Emulator:
        log = tmp_path / f"emulator-{len(started)}.jsonl"
        cmd = [sys.executable, "-m", "batch_inpaint", "emulator", "--port", "0", "--log", str(log),
               "--key", f"{key}={credits}", *args]
        errors = tmp_path / f"emulator-{len(started)}.stderr"
        with errors.open("w") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        started.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "listening on" not in line:
            proc.kill()
            raise RuntimeError(f"emulator did not start: {line} {errors.read_text()}")
        return Emulator(line.rsplit(" ", 1)[1].strip(), log, proc)

    yield start  # type: ignore[misc]
    for proc in started:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


EmulatorFactory = object


@pytest.fixture(scope="session")
def postgres() -> Iterator["Postgres"]:
    """A Postgres cluster of its own for the session (`tests.postgres`); skipped with the reason where
    Debian's binaries are not installed."""
    from tests.postgres import Cluster, binaries

    bindir = binaries()
    if bindir is None:
        pytest.skip("no Postgres binaries under /usr/lib/postgresql (install Debian's postgresql package)")
    cluster = Cluster(bindir)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[Any]:
    """moto's S3 server on 127.0.0.1 for the session, with a fault proxy in front (`tests.s3`)."""
    from tests.s3 import serve

    yield from serve()


@pytest.fixture
def s3(s3_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The S3 server emptied, and this process's environment pointed at it (runs inherit it)."""
    s3_server.reset()
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    from batch_inpaint.buckets import configure, forget

    configure(())
    forget()
    return s3_server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (`tests.browser`), for one module: Playwright's event loop runs in the test
    thread while it is open, where the async tests of other modules need their own."""
    from tests.browser import launch

    yield from launch()


@pytest.fixture(autouse=True)
def state_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test has its own user state folder: the runs of one test share a key's rate limit
    (`limiter.boards.FileBoard`), runs of different tests never do."""
    path = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("XDG_STATE_HOME", str(path))
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Eight 320x240 pairs, three in a subfolder, masks mirrored under masks/."""
    names = ["a", "b", "c", "d", "e", "sub/f", "sub/g", "sub/deeper/h"]
    write_tree(tmp_path / "data", names, size=(320, 240), seed=11)
    return tmp_path / "data"


def cli_env(key: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLIPDROP_", "BATCH_INPAINT_"))}
    if key is not None:
        env["CLIPDROP_API_KEY"] = key
    env.update(extra)
    return env


def run_cli(*args: str, key: str | None = None, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "batch_inpaint", *args], capture_output=True, text=True,
                          timeout=timeout, env=cli_env(key, **env))


_STARTED: list[subprocess.Popen[str]] = []


def spawn(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """A command in the background, its output piped; `_spawned` ends it and closes its pipes
    after the test."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _STARTED.append(proc)
    return proc


def start_cli(*args: str, key: str | None = None, **env: str) -> subprocess.Popen[str]:
    return spawn([sys.executable, "-m", "batch_inpaint", *args], cli_env(key, **env))


@pytest.fixture(autouse=True)
def _spawned() -> Iterator[None]:
    """Pipes a test left open would be closed by the garbage collector in some later test, whose
    run pytest then fails with a ResourceWarning that is not its own."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


FIGURES: list[tuple[str, str]] = []


@pytest.fixture
def figures():  # type: ignore[no-untyped-def]
    """Record a figure for the end-of-run table: figures("fault storm", "extra requests", 123)."""

    def record(scenario: str, what: str, value: object) -> None:
        FIGURES.append((scenario, f"{what}: {value}"))

    return record


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    if FIGURES:
        terminalreporter.section("reliability figures")
        for scenario, text in FIGURES:
            terminalreporter.write_line(f"{scenario}: {text}")
