"""Fixtures for the proxy runner's cluster side: an exec-capable fake node and an owner MCPServer.

See `kwok_exec_node` for why the exec node needs a kwok of its own.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from kwok_exec_node import (
    EXEC_NODE,
    ExecNode,
    exec_node_manifest,
    is_exec_node_ready,
    start_exec_kwok,
    stop_exec_kwok,
)
from testkit.waiting import eventually_sync

from moorage_core.errors import NotFound
from moorage_core.kube import MCPSERVERS, KubeClient
from moorage_dev.cluster import ControlPlane


@pytest.fixture(scope="session")
def exec_node(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExecNode]:
    workdir = tmp_path_factory.mktemp("kwok-exec")
    proc, attach_log = start_exec_kwok(control_plane, workdir)
    try:
        control_plane.kubectl("apply", "-f", "-", input=json.dumps(exec_node_manifest()))
        eventually_sync(
            lambda: proc.poll() is None and is_exec_node_ready(control_plane),
            timeout=60,
            message=f"exec node Ready (log: {workdir / 'kwok-exec.log'})",
        )
        yield ExecNode(name=EXEC_NODE, attach_log=attach_log)
    finally:
        control_plane.kubectl("delete", "node", EXEC_NODE, "--ignore-not-found", check=False)
        stop_exec_kwok(proc)


@pytest_asyncio.fixture
async def owner(kube: KubeClient, namespace: str, crds: list[str]) -> AsyncIterator[dict[str, Any]]:
    """An MCPServer `time` in the test namespace, to own what the proxy runner creates."""
    server = await kube.create(
        MCPSERVERS,
        {
            "apiVersion": "moorage.dev/v1alpha1",
            "kind": "MCPServer",
            "metadata": {"name": "time", "namespace": namespace},
            "spec": {"image": "ghcr.io/example/mcp-time:1.0"},
        },
        namespace=namespace,
    )
    yield server
    with contextlib.suppress(NotFound):
        await kube.delete(MCPSERVERS, name="time", namespace=namespace)
