"""Fixtures for every suite: fail a test that leaves asyncio tasks running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio


@pytest_asyncio.fixture(autouse=True)
async def _no_leaked_tasks(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """A test (with its fixtures) must end every task it started."""
    before = asyncio.all_tasks()
    yield
    me = asyncio.current_task()
    leaked: list[asyncio.Task[object]] = []
    for _ in range(50):
        leaked = [t for t in asyncio.all_tasks() - before if t is not me and not t.done()]
        if not leaked:
            return
        await asyncio.sleep(0.02)
    names = ", ".join(f"{t.get_name()} ({t.get_coro()!r})" for t in leaked)
    for task in leaked:
        task.cancel()
    pytest.fail(f"{request.node.nodeid} leaked asyncio tasks: {names}")
