"""Namespace mode (WATCH_NAMESPACES) reconciles only the listed namespaces; cluster mode all."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from operator_harness import (
    RunningOperator,
    get_or_none,
    run_operator,
    server_status,
    simple_server,
)
from testkit.waiting import eventually

from moorage_core.errors import NotFound
from moorage_core.kube import DEPLOYMENTS, MCPSERVERS, NAMESPACES, KubeClient
from moorage_dev.cluster import ControlPlane

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture
async def other_namespace(kube: KubeClient) -> AsyncIterator[str]:
    name = f"t-{secrets.token_hex(4)}"
    await kube.create(
        NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    try:
        yield name
    finally:
        with contextlib.suppress(NotFound):
            await kube.delete(NAMESPACES, name=name, propagation_policy="Background")


async def create_server(kube: KubeClient, name: str, *, namespace: str) -> dict[str, Any]:
    body = simple_server(name)
    body["metadata"]["namespace"] = namespace
    return await kube.create(MCPSERVERS, body, namespace=namespace)


async def has_children(kube: KubeClient, name: str, *, namespace: str) -> bool:
    status = await server_status(kube, name=name, namespace=namespace)
    assert status.get("phase"), "no status yet"
    assert await get_or_none(kube, DEPLOYMENTS, name=name, namespace=namespace) is not None
    return True


async def test_namespace_mode_leaves_other_namespaces_alone(
    operator: RunningOperator, kube: KubeClient, namespace: str, other_namespace: str
) -> None:
    for informer in operator.manager.informers:
        assert informer.scopes == (namespace,), informer.name
    await create_server(kube, "outside", namespace=other_namespace)
    await create_server(kube, "inside", namespace=namespace)
    await eventually(lambda: has_children(kube, "inside", namespace=namespace), timeout=30)
    await eventually(operator.is_idle, timeout=30)
    assert await server_status(kube, name="outside", namespace=other_namespace) == {}
    assert await get_or_none(kube, DEPLOYMENTS, name="outside", namespace=other_namespace) is None


async def test_cluster_mode_reconciles_every_namespace(
    control_plane: ControlPlane,
    crds: list[str],
    kube: KubeClient,
    namespace: str,
    other_namespace: str,
) -> None:
    async with run_operator(control_plane, namespaces=()) as running:
        for informer in running.manager.informers:
            assert informer.scopes == (None,), informer.name
        await create_server(kube, "first", namespace=namespace)
        await create_server(kube, "second", namespace=other_namespace)
        await eventually(lambda: has_children(kube, "first", namespace=namespace), timeout=30)
        await eventually(
            lambda: has_children(kube, "second", namespace=other_namespace), timeout=30
        )
