"""A VirtualMCPServer against a real apiserver: its children, a RunConfig whose backends follow
the group's members as they join and leave, `discoveredBackends` and the conditions following the
aggregator's `backendHealth` and `unresolvedConflicts`, a missing group, and no write when
nothing changed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from operator_harness import RunningOperator, condition, get_or_none, simple_server
from testkit.remotekinds import group, remoteproxy, virtualmcpserver
from testkit.waiting import eventually

from moorage_core.kube import (
    CONFIGMAPS,
    DEPLOYMENTS,
    MCPREMOTEPROXIES,
    MERGE_PATCH,
    ROLEBINDINGS,
    ROLES,
    SERVICEACCOUNTS,
    SERVICES,
    VIRTUALMCPSERVERS,
    KubeClient,
)

pytestmark = pytest.mark.integration


def vmcp_children(name: str) -> list[tuple[Any, str]]:
    return [
        (SERVICEACCOUNTS, f"{name}-vmcp"),
        (ROLES, f"{name}-vmcp"),
        (ROLEBINDINGS, f"{name}-vmcp"),
        (CONFIGMAPS, f"{name}-vmcp-runconfig"),
        (DEPLOYMENTS, f"{name}-vmcp"),
        (SERVICES, f"mcp-{name}-vmcp"),
    ]


async def vmcp_status(kube: KubeClient, *, name: str, namespace: str) -> dict[str, Any]:
    obj = await kube.get(VIRTUALMCPSERVERS, name=name, namespace=namespace)
    return dict(obj.get("status") or {})


async def backends_of(kube: KubeClient, *, name: str, namespace: str) -> list[dict[str, Any]]:
    configmap = await kube.get(CONFIGMAPS, name=f"{name}-vmcp-runconfig", namespace=namespace)
    backends: list[dict[str, Any]] = json.loads(configmap["data"]["runconfig.json"])["aggregate"][
        "backends"
    ]
    return backends


async def rolled_out(kube: KubeClient, *, name: str, namespace: str) -> bool:
    deployment = await kube.get(DEPLOYMENTS, name=name, namespace=namespace)
    status, wanted = deployment.get("status") or {}, deployment["spec"]["replicas"]
    assert status.get("observedGeneration") == deployment["metadata"]["generation"], status
    counts = [status.get(k, 0) for k in ("replicas", "updatedReplicas", "readyReplicas")]
    assert counts == [wanted] * 3, status
    return True


async def report(kube: KubeClient, *, name: str, namespace: str, **status: Any) -> None:
    """What the aggregator does after checking its backends: a merge patch of its fields."""
    await kube.patch(
        VIRTUALMCPSERVERS,
        {"status": status},
        name=name,
        namespace=namespace,
        subresource="status",
        content_type=MERGE_PATCH,
        field_manager="moorage-proxyrunner",
    )


async def test_members_join_and_leave_and_the_status_follows_the_aggregator(
    operator: RunningOperator, kube: KubeClient, namespace: str, kubectl_apply: Any
) -> None:
    kubectl_apply(group("tools"))
    kubectl_apply(remoteproxy("docs", transport="sse", groupRef={"name": "tools"}))
    kubectl_apply(
        virtualmcpserver(
            "hub",
            groupRef={"name": "tools"},
            conflictResolution={"strategy": "priority", "priority": ["time", "docs"]},
        )
    )
    hub = await kube.get(VIRTUALMCPSERVERS, name="hub", namespace=namespace)

    async def all_children() -> list[dict[str, Any]]:
        found = [
            await get_or_none(kube, kind, name=child, namespace=namespace)
            for kind, child in vmcp_children("hub")
        ]
        assert all(found), found
        return [f for f in found if f]

    children = await eventually(all_children, timeout=30, message="children created")
    for child in children:
        meta = child["metadata"]
        assert meta["labels"]["app.kubernetes.io/name"] == "virtualmcpserver"
        assert meta["labels"]["moorage.dev/virtualmcpserver"] == "hub"
        assert meta["ownerReferences"][0]["uid"] == hub["metadata"]["uid"]
    role = next(c for c in children if c["kind"] == "Role")
    assert role["rules"][1] == {
        "apiGroups": ["moorage.dev"],
        "resources": ["virtualmcpservers/status"],
        "resourceNames": ["hub"],
        "verbs": ["patch"],
    }
    docs_url = f"http://mcp-docs-remote-proxy.{namespace}.svc.cluster.local:8080/sse"
    configmap = next(c for c in children if c["kind"] == "ConfigMap")
    aggregate = json.loads(configmap["data"]["runconfig.json"])["aggregate"]
    assert [(b["name"], b["kind"], b["url"]) for b in aggregate["backends"]] == [
        ("docs", "MCPRemoteProxy", docs_url)
    ]
    assert aggregate["conflict_resolution"]["priority"] == ["docs"]

    async def running_with(count: int) -> dict[str, Any]:
        status = await vmcp_status(kube, name="hub", namespace=namespace)
        assert status.get("phase") == "Running", status.get("message")
        assert status.get("backendCount") == count, status.get("discoveredBackends")
        return status

    status = await eventually(lambda: running_with(1), timeout=90, message="Running, 1 backend")
    assert status["url"] == f"http://mcp-hub-vmcp.{namespace}.svc.cluster.local:8080/mcp"
    assert status["discoveredBackends"] == [
        {"name": "docs", "kind": "MCPRemoteProxy", "url": docs_url, "health": "unknown"}
    ]
    assert condition(status, "BackendsDiscovered")["reason"] == "NotChecked"

    # A member joins: an MCPServer.
    kubectl_apply(simple_server("time", transport="streamable-http", groupRef={"name": "tools"}))

    async def two_backends() -> bool:
        backends = await backends_of(kube, name="hub", namespace=namespace)
        assert [b["name"] for b in backends] == ["docs", "time"]
        return True

    await eventually(two_backends, timeout=30, message="time joined the RunConfig")
    await eventually(lambda: running_with(2), timeout=30, message="2 backends")

    # The aggregator reports health and a conflict.
    await report(
        kube,
        name="hub",
        namespace=namespace,
        backendHealth=[
            {"name": "docs", "healthy": True, "toolCount": 3},
            # As the aggregator writes a backend it could not list: nulls, pruned by the apiserver.
            {
                "name": "time",
                "healthy": False,
                "toolCount": None,
                "message": "connection refused",
                "checkedAt": None,
            },
        ],
        unresolvedConflicts=[{"name": "echo", "backends": ["docs", "time"]}],
    )

    async def reported() -> dict[str, Any]:
        status = await vmcp_status(kube, name="hub", namespace=namespace)
        health = [
            (b["name"], b["health"], b.get("toolCount")) for b in status["discoveredBackends"]
        ]
        assert health == [("docs", "healthy", 3), ("time", "unhealthy", None)]
        discovered = condition(status, "BackendsDiscovered")
        assert (discovered["status"], discovered["message"]) == (
            "True",
            "2 backend(s) checked; unhealthy: time",
        )
        conflicts = condition(status, "ConflictsResolved")
        assert (conflicts["status"], conflicts["message"]) == (
            "False",
            "Unresolved name conflicts: echo (docs, time)",
        )
        return status

    status = await eventually(reported, timeout=30, message="health followed")
    assert status["backendHealth"][0]["name"] == "docs", "the operator keeps the runner's fields"

    # Nothing changed: a resync writes nothing (once the rollouts the join started are over:
    # kwok moving a Deployment's replica counts is a change the status follows).
    for deployment in ("hub-vmcp", "time"):
        await eventually(
            lambda name=deployment: rolled_out(kube, name=name, namespace=namespace),
            timeout=60,
            message=f"{deployment} rolled out",
        )
    await eventually(operator.is_idle, timeout=30, message="operator idle")
    writes = operator.requests()
    await operator.resync()
    assert operator.requests() == writes, "a resync with nothing changed made API writes"

    # A member leaves the group.
    await kube.patch(
        MCPREMOTEPROXIES,
        {"spec": {"groupRef": None}},
        name="docs",
        namespace=namespace,
        content_type=MERGE_PATCH,
    )

    async def docs_left() -> bool:
        backends = await backends_of(kube, name="hub", namespace=namespace)
        assert [b["name"] for b in backends] == ["time"]
        status = await vmcp_status(kube, name="hub", namespace=namespace)
        assert status["backendCount"] == 1
        assert [b["name"] for b in status["discoveredBackends"]] == ["time"]
        return True

    await eventually(docs_left, timeout=30, message="docs left")


async def test_a_missing_group_fails_the_virtual_server_until_it_appears(
    operator: RunningOperator, kube: KubeClient, namespace: str, kubectl_apply: Any
) -> None:
    kubectl_apply(virtualmcpserver("lonely", groupRef={"name": "later"}))

    async def phase(expected: str) -> dict[str, Any]:
        status = await vmcp_status(kube, name="lonely", namespace=namespace)
        assert status.get("phase") == expected, status.get("message")
        return status

    status = await eventually(lambda: phase("Failed"), timeout=30, message="Failed")
    assert status["message"] == 'MCPGroup "later" not found'
    assert condition(status, "GroupResolved")["reason"] == "GroupNotFound"

    kubectl_apply(group("later"))
    status = await eventually(lambda: phase("Pending"), timeout=30, message="Pending")
    assert status["message"] == 'MCPGroup "later" has no members; nothing to aggregate'
    assert status["backendCount"] == 0
    assert await get_or_none(kube, DEPLOYMENTS, name="lonely-vmcp", namespace=namespace) is None
