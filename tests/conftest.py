"""Fixtures for every suite: fail a test that leaves asyncio tasks running; a control plane with
a real node for the suites that run real containers."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from moorage_dev.cluster import ControlPlane, real_node_problems
from moorage_dev.realnode_preflight import preflight_message


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "real_node_plane" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.realnode)


@pytest.fixture(scope="session")
def host_ip_forward() -> str:
    """net.ipv4.ip_forward as this machine had it before the session's real node started (what
    stopping the node must leave); read from /proc, not from the node's own record."""
    return Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()


@pytest.fixture(scope="session")
def real_node_plane(
    tmp_path_factory: pytest.TempPathFactory, host_ip_forward: str
) -> Iterator[ControlPlane]:
    """A control plane with a real node (docs/real-node.md) in a temporary state dir; no CRDs.

    Where the machine cannot run a real node (not root, packages missing, another real node
    running, ...) the tests that use it are skipped with the preflight's reason, or fail with it
    when MOORAGE_REQUIRE_REAL_NODE=1. `host_ip_forward` is requested so that it is read before
    the node starts.
    """
    state_dir = tmp_path_factory.mktemp("realnode")
    problems = real_node_problems(state_dir)
    if problems:
        reason = preflight_message(problems)
        if os.environ.get("MOORAGE_REQUIRE_REAL_NODE") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    plane = ControlPlane(state_dir, real_node=True, report=print)
    plane.start()
    try:
        yield plane
    finally:
        node = plane.real_node
        plane.stop()
        # Every session that ran a real node checks that stopping it left nothing behind.
        leftovers = node.find_leftovers() if node is not None else []
        if leftovers:
            pytest.fail("the real node left behind: " + "; ".join(leftovers))


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
