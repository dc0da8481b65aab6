"""An MCPServer's phase follows what runs: Running, Failed on a crash-looping pod, Stopped.

kwok moves every pod on its fake node to Ready through its `pod-ready` stage, whose selector
only matches pods without `status.podIP`. A status the test writes afterwards through the pod's
status subresource (keeping the podIP kwok assigned) therefore stays as written: that is how a
pod is put into CrashLoopBackOff here, the way a kubelet would report it.
"""

from __future__ import annotations

from typing import Any

import pytest
from operator_harness import (
    RunningOperator,
    condition,
    get_or_none,
    mcp_statefulset,
    server_status,
    simple_server,
    wait_for_phase,
)
from testkit.waiting import eventually

from moorage_core.kube import (
    DEPLOYMENTS,
    EVENTS,
    MCPSERVERS,
    PODS,
    STATEFULSETS,
    STRATEGIC_MERGE_PATCH,
    KubeClient,
)

pytestmark = pytest.mark.integration


async def events_for(kube: KubeClient, *, name: str, namespace: str) -> list[dict[str, Any]]:
    listed = await kube.list(EVENTS, namespace=namespace)
    return [e for e in listed.items if (e.get("regarding") or {}).get("name") == name]


async def start_running(
    kube: KubeClient, *, name: str, namespace: str, apply: Any
) -> dict[str, Any]:
    """Apply a server, wait for its proxy to be ready, create its StatefulSet, wait for Running."""
    apply(simple_server(name))
    server = await kube.get(MCPSERVERS, name=name, namespace=namespace)

    async def proxy_ready() -> bool:
        deployment = await get_or_none(kube, DEPLOYMENTS, name=name, namespace=namespace)
        return bool(((deployment or {}).get("status") or {}).get("readyReplicas"))

    await eventually(proxy_ready, timeout=60, message="proxy Deployment ready (kwok)")
    await kube.create(STATEFULSETS, mcp_statefulset(server), namespace=namespace)
    return await wait_for_phase(kube, name=name, namespace=namespace, phase="Running")


async def test_reaches_running_then_fails_on_crash_loop_then_stops(
    operator: RunningOperator, kube: KubeClient, namespace: str, kubectl_apply: Any
) -> None:
    status = await start_running(kube, name="echo", namespace=namespace, apply=kubectl_apply)
    assert status["message"] == "MCP server is running"
    assert status["url"] == f"http://mcp-echo-proxy.{namespace}.svc.cluster.local:8080/mcp"
    assert status["readyReplicas"] == 1
    ready = condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Running")

    pod = await kube.get(PODS, name="echo-0", namespace=namespace)
    assert pod["status"].get("podIP"), "kwok assigns a podIP when it makes a pod ready"
    await kube.patch(
        PODS,
        {
            "status": {
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [
                    {
                        "name": "mcp",
                        "ready": False,
                        "restartCount": 5,
                        "state": {
                            "running": None,
                            "waiting": {
                                "reason": "CrashLoopBackOff",
                                "message": "back-off 1m20s restarting failed container",
                            },
                        },
                    }
                ],
            }
        },
        name="echo-0",
        namespace=namespace,
        subresource="status",
        content_type=STRATEGIC_MERGE_PATCH,
    )
    status = await wait_for_phase(kube, name="echo", namespace=namespace, phase="Failed")
    assert status["message"] == "MCP server pod failed: CrashLoopBackOff"
    ready = condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Failed")
    pod = await kube.get(PODS, name="echo-0", namespace=namespace)
    waiting = pod["status"]["containerStatuses"][0]["state"].get("waiting") or {}
    assert waiting.get("reason") == "CrashLoopBackOff", "kwok left the written status alone"

    events = await events_for(kube, name="echo", namespace=namespace)
    reasons = {(e["type"], e["reason"]) for e in events}
    assert ("Normal", "Running") in reasons
    assert ("Warning", "Failed") in reasons
    failed = next(e for e in events if e["reason"] == "Failed")
    assert failed["note"] == "MCP server pod failed: CrashLoopBackOff"
    assert failed["reportingController"] == "moorage.dev/operator"

    await kube.patch(MCPSERVERS, {"spec": {"replicas": 0}}, name="echo", namespace=namespace)
    status = await wait_for_phase(kube, name="echo", namespace=namespace, phase="Stopped")
    assert status["message"] == "MCP server is stopped (replicas: 0)"
    deployment = await kube.get(DEPLOYMENTS, name="echo", namespace=namespace)
    assert deployment["spec"]["replicas"] == 0


async def test_stdio_replicas_sharing_redis_are_not_capped(
    operator: RunningOperator, kube: KubeClient, namespace: str, kubectl_apply: Any
) -> None:
    # Memory storage cannot run more than one replica (the CRD refuses it); with Redis each proxy
    # replica runs its own backend pod, so nothing is capped.
    redis = {"type": "redis", "redis": {"address": "redis.cache:6379"}}
    kubectl_apply(simple_server("capped", replicas=3, sessionStorage=redis))

    async def not_capped() -> dict[str, Any]:
        status = await server_status(kube, name="capped", namespace=namespace)
        assert condition(status, "StdioReplicaCapped")["status"] == "False"
        return status

    await eventually(not_capped, timeout=30, message="StdioReplicaCapped False")
    deployment = await kube.get(DEPLOYMENTS, name="capped", namespace=namespace)
    assert deployment["spec"]["replicas"] == 3


async def test_a_server_being_deleted_is_terminating(
    operator: RunningOperator, kube: KubeClient, namespace: str, kubectl_apply: Any
) -> None:
    # A finalizer of the test's own holds the server in deletion long enough to look at it.
    server = simple_server("leaving")
    server["metadata"]["finalizers"] = ["tests.moorage.dev/hold"]
    kubectl_apply(server)
    await wait_for_phase(kube, name="leaving", namespace=namespace, phase="Pending")
    await kube.delete(MCPSERVERS, name="leaving", namespace=namespace)
    status = await wait_for_phase(kube, name="leaving", namespace=namespace, phase="Terminating")
    assert status["message"] == "MCP server is being deleted"
    assert condition(status, "Ready")["reason"] == "NotReady"
    await kube.patch(
        MCPSERVERS, {"metadata": {"finalizers": None}}, name="leaving", namespace=namespace
    )

    async def gone() -> bool:
        assert await get_or_none(kube, MCPSERVERS, name="leaving", namespace=namespace) is None
        return True

    await eventually(gone, timeout=30, message="server deleted")
