"""Run control: a stop releases senders waiting for a slot at once, and the exit code says why a run ended."""

from __future__ import annotations

import anyio
import pytest

from batch_inpaint.control import RunControl
from batch_inpaint.errors import KeyRejected
from batch_inpaint.exitcodes import ExitCode
from batch_inpaint.limiter import ProcessLimiter, Slot


@pytest.mark.asyncio
async def test_a_stop_releases_a_sender_waiting_for_its_slot_at_once() -> None:
    control, limiter = RunControl(grace_seconds=10), ProcessLimiter(1)  # one a minute: the next slot is 60 s away
    await limiter.acquire()
    got: list[Slot | None] = []
    with anyio.fail_after(10):  # real time, far less than the 60 s the slot is away
        async with anyio.create_task_group() as tg:
            async def wait() -> None:
                got.append(await control.wait_unless_stopped(limiter.acquire))

            tg.start_soon(wait)
            await anyio.sleep(0.05)
            control.stop()
    assert got == [None] and control.stopping
    assert await control.wait_unless_stopped(limiter.acquire) is None  # and nobody waits afterwards


def test_the_exit_code_says_why_the_run_ended() -> None:
    control = RunControl(grace_seconds=1)
    assert control.exit_code(unfinished_items=0) == ExitCode.OK
    assert control.exit_code(unfinished_items=2) == ExitCode.FAILED
    control.fail(KeyRejected(403, "invalid api key"))
    assert control.exit_code(0) == ExitCode.KEY_REJECTED and "rejected the key" in (control.stop_reason or "")
    control.stop(exit_code=ExitCode.INTERRUPTED)  # a signal after the failure: the signal's code wins
    assert control.exit_code(0) == ExitCode.INTERRUPTED and control.stop_reason and "interrupted" in control.stop_reason


@pytest.mark.asyncio
async def test_a_signal_after_the_batch_ended_only_marks_the_run_stopping() -> None:
    """A SIGTERM while the report is written or the webhook told: the batch's task group is gone."""
    control = RunControl(grace_seconds=10)
    async with anyio.create_task_group() as tg:
        control.bind(tg)
    control.unbind()
    control.stop(exit_code=ExitCode.TERMINATED)
    control.stop()  # a second one too
    assert control.stopping and control.exit_code(0) == ExitCode.TERMINATED
