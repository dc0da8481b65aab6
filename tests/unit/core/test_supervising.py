"""A background task that ends on its own ends the wait with its error; cancelled ones do not."""

from __future__ import annotations

import asyncio

import pytest

from moorage_core.supervising import BackgroundTaskEnded, TaskSupervisor


async def _forever() -> None:
    await asyncio.Event().wait()


async def _crash() -> None:
    await asyncio.sleep(0)
    raise ValueError("watch broke")


async def _return() -> None:
    await asyncio.sleep(0)


async def test_wait_reraises_the_error_of_a_task_that_crashed() -> None:
    tripped: list[bool] = []
    supervisor = TaskSupervisor(on_failure=lambda: tripped.append(True))
    supervisor.spawn("informer", _forever())
    supervisor.spawn("watch", _crash())
    with pytest.raises(ValueError, match="watch broke"):
        await asyncio.wait_for(supervisor.wait(asyncio.Event()), timeout=5)
    assert tripped == [True]
    assert supervisor.dead() == ["watch"]
    await supervisor.aclose()


async def test_a_task_that_returns_counts_as_failed() -> None:
    supervisor = TaskSupervisor()
    supervisor.spawn("reload", _return())
    with pytest.raises(BackgroundTaskEnded, match="reload ended unexpectedly"):
        await asyncio.wait_for(supervisor.wait(asyncio.Event()), timeout=5)
    await supervisor.aclose()


async def test_wait_returns_when_stopped_and_closing_is_not_a_failure() -> None:
    supervisor = TaskSupervisor()
    supervisor.spawn("informer", _forever())
    stop = asyncio.Event()
    stop.set()
    await asyncio.wait_for(supervisor.wait(stop), timeout=5)
    await supervisor.aclose()
    assert not supervisor.failed
    supervisor.raise_if_failed()


async def test_a_popped_task_no_longer_trips_the_supervisor() -> None:
    supervisor = TaskSupervisor()
    task = supervisor.spawn("leading", _crash())
    assert supervisor.pop("leading") is task
    with pytest.raises(ValueError, match="watch broke"):
        await task
    assert not supervisor.failed


async def test_names_are_unique_among_running_tasks() -> None:
    supervisor = TaskSupervisor()
    supervisor.spawn("informer", _forever())
    with pytest.raises(ValueError, match="already running"):
        supervisor.spawn("informer", _forever())
    await supervisor.aclose()
