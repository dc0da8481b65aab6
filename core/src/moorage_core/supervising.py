"""`TaskSupervisor`: the background tasks a process needs, and what happens when one ends.

Every task spawned here (an informer, a watch, a reload loop, a healer) runs until it is
cancelled. One that ends on its own — with an error, or by returning — has failed: the supervisor
logs it, calls `on_failure` (a command sets its stop event there) and `wait()` re-raises its
exception, so the process exits non-zero instead of serving half-alive. Liveness probes read
`dead()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

log = structlog.get_logger(__name__)


class BackgroundTaskEnded(RuntimeError):
    """A background task returned although it should run until cancelled."""


class TaskSupervisor:
    """Named background tasks; the first to end on its own trips the supervisor."""

    def __init__(self, *, on_failure: Callable[[], None] | None = None) -> None:
        self._on_failure = on_failure
        self._tasks: dict[str, asyncio.Task[None]] = {}
        """Every task spawned and not yet removed, by its unique name."""
        self._failed: asyncio.Task[None] | None = None
        """The first task that ended on its own; None while all run (or were cancelled)."""
        self._tripped = asyncio.Event()
        """Set once `_failed` is."""
        self._closing = False
        """True from `aclose()` on: tasks ending then were cancelled, not failed."""

    def spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run `coro` as the task `name` (names are unique among running tasks)."""
        if name in self._tasks and not self._tasks[name].done():
            coro.close()
            raise ValueError(f"a background task named {name!r} is already running")
        task = asyncio.create_task(coro, name=name)
        self._tasks[name] = task
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[None]) -> None:
        if self._closing or task.cancelled() or self._tasks.get(task.get_name()) is not task:
            return
        exc = task.exception()
        log.error(
            "background_task_failed",
            task=task.get_name(),
            error=f"{type(exc).__name__}: {exc}" if exc is not None else "returned",
        )
        if self._failed is None:
            self._failed = task
            self._tripped.set()
            if self._on_failure is not None:
                self._on_failure()

    def pop(self, name: str) -> asyncio.Task[None] | None:
        """Stop supervising the task `name` (its end no longer trips anything); the task."""
        return self._tasks.pop(name, None)

    @property
    def failed(self) -> bool:
        return self._failed is not None

    def dead(self) -> list[str]:
        """Names of supervised tasks that have ended, sorted."""
        return sorted(name for name, task in self._tasks.items() if task.done())

    def raise_if_failed(self) -> None:
        """Re-raise what ended the first failed task (`BackgroundTaskEnded` if it returned)."""
        task = self._failed
        if task is None:
            return
        exc = task.exception()
        if exc is not None:
            raise exc
        raise BackgroundTaskEnded(f"{task.get_name()} ended unexpectedly")

    async def wait(self, stop: asyncio.Event) -> None:
        """Return when `stop` is set; raise as `raise_if_failed` when a task failed first."""
        stopped = asyncio.create_task(stop.wait(), name="supervisor-stop")
        tripped = asyncio.create_task(self._tripped.wait(), name="supervisor-trip")
        try:
            await asyncio.wait({stopped, tripped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (stopped, tripped):
                waiter.cancel()
            await asyncio.gather(stopped, tripped, return_exceptions=True)
        self.raise_if_failed()

    async def aclose(self) -> None:
        """Cancel every task and wait for them to end."""
        self._closing = True
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
