"""Run control: whether a run goes on, why it stopped, and the exit code it ends with."""

from __future__ import annotations

from typing import Awaitable, Callable, TypeVar

import anyio
import anyio.abc

from .errors import RunStopped
from .exitcodes import ExitCode

T = TypeVar("T")


class RunControl:
    """Handed to ``run_batch``'s ``on_start``: `stop` is the one call a caller needs.

    The first `stop` sends nothing new and gives requests in flight ``grace_seconds`` to finish; a second
    stops at once. The run itself stops (`fail`) when nothing more can succeed, such as a rejected key.
    """

    def __init__(self, grace_seconds: float) -> None:
        self.grace_seconds = grace_seconds
        self.stopping = False
        self.stop_error: RunStopped | None = None
        self.signal_exit: int | None = None
        self._stops = 0
        self._tg: anyio.abc.TaskGroup | None = None
        self._intake: anyio.CancelScope | None = None
        self._waiting: set[anyio.CancelScope] = set()

    def stop(self, exit_code: int | None = None) -> None:
        """Stop gracefully, or at once if called before. ``exit_code`` is what the run ends with
        (130 for SIGINT, say); the first one given wins."""
        if exit_code is not None and self.signal_exit is None:
            self.signal_exit = exit_code
        self._stops += 1
        if self._stops > 1:
            self._cancel_all()
            return
        self._wind_down()
        if self._tg is not None:
            self._tg.start_soon(self._grace)

    def fail(self, exc: RunStopped) -> None:
        """Nothing more can succeed: send nothing new; requests in flight finish."""
        if self.stop_error is None:
            self.stop_error = exc
        self._wind_down()

    def exit_code(self, unfinished_items: int) -> int:
        if self.signal_exit is not None:
            return self.signal_exit
        if self.stop_error is not None:
            return int(self.stop_error.exit_code)
        return int(ExitCode.FAILED if unfinished_items else ExitCode.OK)

    @property
    def stop_reason(self) -> str | None:
        if self.signal_exit is not None:
            return "interrupted; run the same command again to continue"
        return None if self.stop_error is None else str(self.stop_error)

    async def wait_unless_stopped(self, wait: Callable[[], Awaitable[T]]) -> T | None:
        """Await ``wait`` (a send slot, say) unless the run stops first: None if it stopped."""
        if self.stopping:
            return None
        result = None
        with anyio.CancelScope() as scope:
            self._waiting.add(scope)
            try:
                result = await wait()
            finally:
                self._waiting.discard(scope)
        return None if scope.cancelled_caught or self.stopping else result

    # --- wiring, for the batch -----------------------------------------------------------------

    def bind(self, tg: anyio.abc.TaskGroup) -> None:
        """The batch's outer task group: cancelling it stops everything; the grace timer runs in it."""
        self._tg = tg
        if self._stops:
            self._wind_down()
            tg.start_soon(self._grace)

    def unbind(self) -> None:
        """The batch's task group has ended: a stop from now on only marks the run as stopping."""
        self._tg = None
        self._intake = None

    def bind_intake(self, scope: anyio.CancelScope) -> None:
        self._intake = scope
        if self.stopping:
            scope.cancel()

    def _wind_down(self) -> None:
        self.stopping = True
        if self._intake is not None:
            self._intake.cancel()
        for scope in self._waiting:
            scope.cancel()

    def _cancel_all(self) -> None:
        self._wind_down()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def _grace(self) -> None:
        await anyio.sleep(self.grace_seconds)
        self._cancel_all()
