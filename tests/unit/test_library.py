"""The library as a Python user meets it: public names a type checker sees, a small result, one call to
stop, settings that check themselves, and an engine passed in that brings its own identity."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import batch_inpaint
from batch_inpaint import ConfigError, RunControl, Settings, run_batch
from batch_inpaint.engines import FakeEngine, InpaintRequest, InpaintResult
from batch_inpaint.limiter import Unlimited
from batch_inpaint.synthetic import write_tree


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    write_tree(tmp_path / "in", [f"p{i}" for i in range(4)], size=(48, 32))
    return tmp_path


def settings_for(tree: Path, **changes: object) -> Settings:
    return Settings(input_dir=tree / "in" / "photos", masks_dir=tree / "in" / "masks", out_dir=tree / "out",
                    **changes)  # type: ignore[arg-type]


def test_results_of_an_engine_passed_in_are_not_taken_for_the_clipdrop_engine(tree: Path) -> None:
    """A custom engine's results were recorded under the settings' engine name (clipdrop by default),
    so a later real Clipdrop run skipped them as done."""
    settings = settings_for(tree, api_key="k")
    anyio.run(lambda: run_batch(settings, engine=FakeEngine()))
    again = anyio.run(lambda: run_batch(settings, engine=FakeEngine()))
    assert again.stats.already_done == 4  # the same engine: nothing to redo
    plan = subprocess.run([sys.executable, "-m", "batch_inpaint", "plan", str(tree / "in" / "photos"),
                           "--masks", str(tree / "in" / "masks"), "--out", str(tree / "out")],
                          capture_output=True, text=True, check=True).stdout
    assert "ready to send: 4" in plan and "already done (skipped): 0" in plan


def test_a_run_returns_a_small_result(tree: Path) -> None:
    result = anyio.run(lambda: run_batch(settings_for(tree, engine="local")))
    assert result.exit_code == 0 and result.stats.done == 4 and result.stop_reason is None
    assert result.manifest == str(tree / "out" / ".batch-inpaint" / "manifest.sqlite3")
    assert not hasattr(result, "store") and not hasattr(result, "engine")  # not the internals


class StoppingEngine(FakeEngine):
    """Stops the run from inside its first request (once, or twice), then answers after ``seconds``."""

    def __init__(self, seconds: float, *, stops: int = 1) -> None:
        super().__init__(paid=False)
        self.seconds = seconds
        self.stops = stops
        self.controls: list[RunControl] = []

    async def inpaint(self, request: InpaintRequest) -> InpaintResult:
        if not self.calls:
            for _ in range(self.stops):
                self.controls[0].stop(exit_code=130)
        await anyio.sleep(self.seconds)
        return await super().inpaint(request)


def statuses(tree: Path) -> list[str]:
    import sqlite3

    with sqlite3.connect(tree / "out" / ".batch-inpaint" / "manifest.sqlite3") as db:
        return sorted(row[0] for row in db.execute("SELECT status FROM items"))


async def stopped_run(tree: Path, engine: StoppingEngine, grace: float) -> tuple[float, object]:
    start = anyio.current_time()
    result = await run_batch(settings_for(tree, concurrency=1, grace_seconds=grace), engine=engine,
                             limiter=Unlimited(), on_start=engine.controls.append)
    return anyio.current_time() - start, result


@pytest.mark.asyncio
async def test_one_stop_lets_requests_in_flight_finish_and_sends_nothing_new(tree: Path) -> None:
    engine = StoppingEngine(0.2)
    elapsed, result = await stopped_run(tree, engine, grace=30)
    assert result.exit_code == 130 and "interrupted" in (result.stop_reason or "")  # type: ignore[attr-defined]
    assert len(engine.calls) == 1 and result.stats.done == 1  # type: ignore[attr-defined]
    assert elapsed < 20  # it ended when the request did, not when the grace period would have
    assert statuses(tree) == ["done", "pending", "pending", "pending"]


@pytest.mark.asyncio
async def test_a_request_slower_than_the_grace_period_is_cut_off(tree: Path) -> None:
    engine = StoppingEngine(3600)
    elapsed, result = await stopped_run(tree, engine, grace=0.3)
    assert result.exit_code == 130 and result.stats.done == 0  # type: ignore[attr-defined]
    assert 0.3 <= elapsed < 20
    # its answer never came: the next run resends it and counts it as possibly charged twice
    assert statuses(tree) == ["in_flight", "pending", "pending", "pending"]


@pytest.mark.asyncio
async def test_a_second_stop_stops_at_once(tree: Path) -> None:
    engine = StoppingEngine(3600, stops=2)
    elapsed, result = await stopped_run(tree, engine, grace=3600)
    assert result.exit_code == 130 and elapsed < 20  # type: ignore[attr-defined]
    assert statuses(tree) == ["in_flight", "pending", "pending", "pending"]


@pytest.mark.parametrize("changes", [{"rate": 0}, {"rate": float("inf")}, {"rate": float("nan")},
                                     {"concurrency": 0}, {"quality": 101}, {"engine": "magic"}, {"progress": "x"}])
def test_settings_check_themselves_when_built(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Settings(**changes)  # type: ignore[arg-type]


def test_the_public_names_are_there_at_run_time() -> None:
    for name in batch_inpaint.__all__:
        assert getattr(batch_inpaint, name) is not None, name


SNIPPET = '''
import anyio
from batch_inpaint import ExitCode, MemoryStore, ProcessLimiter, RunControl, RunResult, build_settings, run_batch

def stop_later(control: RunControl) -> None:
    control.stop()

async def main() -> int:
    settings = build_settings({"input_dir": "photos", "masks_dir": "masks", "out_dir": "out"})
    result: RunResult = await run_batch(settings, store=MemoryStore(), limiter=ProcessLimiter(30), on_start=stop_later)
    done: int = result.stats.done
    print(done, result.manifest)
    return result.exit_code if result.exit_code != ExitCode.OK else 0

anyio.run(main)
'''


def test_a_users_code_type_checks_against_the_public_names(tmp_path: Path) -> None:
    user = tmp_path / "user_code.py"
    user.write_text(SNIPPET)
    bad = tmp_path / "user_mistake.py"
    bad.write_text("import batch_inpaint\nresult: int = batch_inpaint.run_batch\n")
    checked = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(user)],
                             capture_output=True, text=True, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout
    wrong = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(bad)],
                           capture_output=True, text=True, cwd=tmp_path)
    assert wrong.returncode == 1 and "Incompatible types" in wrong.stdout  # the names are typed, not `object`


def test_settings_that_ask_for_a_dry_run_are_never_run(tree: Path) -> None:
    engine = FakeEngine()
    with pytest.raises(ConfigError, match="dry run"):
        anyio.run(lambda: run_batch(settings_for(tree, dry_run=True), engine=engine))
    assert engine.calls == [] and not (tree / "out").exists()
