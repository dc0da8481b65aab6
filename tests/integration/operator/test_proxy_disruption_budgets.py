"""Scaled-out proxies against a real apiserver, for every kind that runs one: at `replicas: 2`
(with Redis session storage) the operator applies a PodDisruptionBudget letting one proxy pod go
at a time, at `replicas: 1` it deletes it, and an operator started afresh over what exists
writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from operator_harness import RunningOperator, get_or_none, run_operator, simple_server
from testkit.remotekinds import group, remoteproxy, virtualmcpserver
from testkit.waiting import eventually

from moorage_core.kube import (
    DEPLOYMENTS,
    MCPREMOTEPROXIES,
    MCPSERVERS,
    PODDISRUPTIONBUDGETS,
    VIRTUALMCPSERVERS,
    KubeClient,
    ResourceKind,
)
from moorage_dev.cluster import ControlPlane

pytestmark = pytest.mark.integration

REDIS = {"type": "redis", "redis": {"address": "redis.cache:6379"}}

# kind, the object at `replicas`, the name of its proxy Deployment (and of the budget)
KINDS: dict[str, tuple[ResourceKind, Any, str]] = {
    "mcpserver": (
        MCPSERVERS,
        lambda replicas: simple_server(
            "scaled", transport="streamable-http", replicas=replicas, sessionStorage=REDIS
        ),
        "scaled",
    ),
    "mcpremoteproxy": (
        MCPREMOTEPROXIES,
        lambda replicas: remoteproxy("scaled", replicas=replicas, sessionStorage=REDIS),
        "scaled-remote-proxy",
    ),
    "virtualmcpserver": (
        VIRTUALMCPSERVERS,
        lambda replicas: virtualmcpserver(
            "scaled", groupRef={"name": "tools"}, replicas=replicas, sessionStorage=REDIS
        ),
        "scaled-vmcp",
    ),
}


@pytest.mark.parametrize("kind", list(KINDS))
async def test_two_replicas_get_a_budget_that_goes_at_one_and_a_restart_writes_nothing(
    control_plane: ControlPlane,
    operator: RunningOperator,
    kube: KubeClient,
    namespace: str,
    kubectl_apply: Any,
    kind: str,
) -> None:
    resource, build, deployment = KINDS[kind]
    if kind == "virtualmcpserver":
        kubectl_apply(group("tools"))
        kubectl_apply(remoteproxy("docs", groupRef={"name": "tools"}))
    kubectl_apply(build(2))
    owner = await kube.get(resource, name="scaled", namespace=namespace)

    async def budget() -> dict[str, Any]:
        found = await get_or_none(kube, PODDISRUPTIONBUDGETS, name=deployment, namespace=namespace)
        assert found is not None, "no PodDisruptionBudget yet"
        return dict(found)

    made = await eventually(budget, timeout=30, message="PodDisruptionBudget applied")
    proxy = await kube.get(DEPLOYMENTS, name=deployment, namespace=namespace)
    assert made["spec"]["maxUnavailable"] == 1
    assert made["spec"]["selector"] == proxy["spec"]["selector"]
    assert made["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
    assert proxy["spec"]["replicas"] == 2

    async def settled() -> bool:
        # Both proxy pods ready (kwok) and the status saying so: nothing left to write.
        status = (await kube.get(resource, name="scaled", namespace=namespace)).get("status") or {}
        assert status.get("readyReplicas") == 2, status
        return operator.is_idle()

    await eventually(settled, timeout=60, message="proxy pods ready and the operator idle")
    # The disruption controller writes the budget's status; only its spec is ours.
    generation = (await budget())["metadata"]["generation"]

    # A fresh operator (its caches filled from what exists) has nothing to write.
    async with run_operator(control_plane, namespaces=(namespace,)) as fresh:
        await eventually(
            lambda: fresh.is_idle() and fresh.reconciles(kind) >= 1,
            timeout=60,
            message="fresh operator reconciled",
        )
        assert sum(fresh.requests().values()) == 0, fresh.requests()
    assert (await budget())["metadata"]["generation"] == generation

    kubectl_apply(build(1))

    async def gone() -> bool:
        found = await get_or_none(kube, PODDISRUPTIONBUDGETS, name=deployment, namespace=namespace)
        assert found is None, "the PodDisruptionBudget is still there"
        return True

    await eventually(gone, timeout=30, message="PodDisruptionBudget deleted")
    proxy = await kube.get(DEPLOYMENTS, name=deployment, namespace=namespace)
    assert proxy["spec"]["replicas"] == 1
