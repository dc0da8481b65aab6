"""MCPGroups against a real apiserver: members and counts follow joins and leaves, deleting a group
with members is blocked (with a condition naming them) until the last one leaves, a member of a
missing group says so and still runs, and nothing is written when nothing changed."""

from __future__ import annotations

from typing import Any

import pytest
from operator_harness import EXAMPLES, RunningOperator, condition, server_status, simple_server
from testkit.waiting import eventually

from moorage_core.errors import NotFound
from moorage_core.kube import MCPGROUPS, MCPREMOTEPROXIES, KubeClient
from moorage_dev.cluster import ControlPlane

pytestmark = pytest.mark.integration


def group(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPGroup",
        "metadata": {"name": name},
        "spec": {"description": "the team's servers"},
    }


def remote_proxy(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPRemoteProxy",
        "metadata": {"name": name},
        "spec": {"remoteUrl": "https://mcp.example.com/mcp", **spec},
    }


async def group_status(kube: KubeClient, *, name: str, namespace: str) -> dict[str, Any]:
    obj = await kube.get(MCPGROUPS, name=name, namespace=namespace)
    return dict(obj.get("status") or {})


async def group_gone(kube: KubeClient, *, name: str, namespace: str) -> bool:
    try:
        await kube.get(MCPGROUPS, name=name, namespace=namespace)
    except NotFound:
        return True
    return False


async def wait_for_members_of(
    kube: KubeClient, *, group_name: str, namespace: str, members: list[tuple[str, str]]
) -> dict[str, Any]:
    async def listed() -> dict[str, Any]:
        status = await group_status(kube, name=group_name, namespace=namespace)
        assert [(m["kind"], m["name"]) for m in status.get("members") or []] == members, status
        servers = sum(1 for kind, _ in members if kind == "MCPServer")
        assert (status.get("serverCount"), status.get("remoteProxyCount")) == (
            servers,
            len(members) - servers,
        )
        assert status.get("memberCount") == len(members)
        return status

    return await eventually(listed, timeout=30, message=f"members {members}")


async def wait_for_members(
    kube: KubeClient, *, namespace: str, members: list[tuple[str, str]], counts: tuple[int, int]
) -> dict[str, Any]:
    status = await wait_for_members_of(
        kube, group_name="team", namespace=namespace, members=members
    )
    assert (status["serverCount"], status["remoteProxyCount"]) == counts
    return status


async def test_members_join_and_leave_and_deletion_waits_for_the_last(
    operator: RunningOperator, kube: KubeClient, namespace: str, kubectl_apply: Any
) -> None:
    kubectl_apply(group("team"))
    status = await wait_for_members(kube, namespace=namespace, members=[], counts=(0, 0))
    assert status["phase"] == "Ready"
    stored = await kube.get(MCPGROUPS, name="team", namespace=namespace)
    assert stored["metadata"]["finalizers"] == ["moorage.dev/group-members"]

    kubectl_apply(simple_server("alpha", groupRef={"name": "team"}))
    kubectl_apply(remote_proxy("docs", groupRef={"name": "team"}))
    members = [("MCPRemoteProxy", "docs"), ("MCPServer", "alpha")]
    await wait_for_members(kube, namespace=namespace, members=members, counts=(1, 1))

    async def phases_known() -> dict[str, Any]:
        status = await group_status(kube, name="team", namespace=namespace)
        phases = {m["name"]: m.get("phase") for m in status["members"]}
        assert phases == {"docs": "Running", "alpha": "Pending"}, phases
        # Settled: alpha's proxy is ready and waits for a StatefulSet nobody creates here.
        server = await server_status(kube, name="alpha", namespace=namespace)
        assert server.get("readyReplicas") == 1, server.get("message")
        return status

    await eventually(phases_known, timeout=60, message="member phases")
    server = await server_status(kube, name="alpha", namespace=namespace)
    assert condition(server, "GroupResolved")["status"] == "True"

    # Nothing changed: a resync writes nothing.
    await eventually(operator.is_idle, timeout=30, message="operator idle")
    writes = operator.requests()
    await operator.resync()
    assert operator.requests() == writes, "a resync with nothing changed made API writes"

    await kube.delete(MCPGROUPS, name="team", namespace=namespace)

    async def blocked() -> dict[str, Any]:
        status = await group_status(kube, name="team", namespace=namespace)
        assert status.get("phase") == "Terminating", status
        deletion = condition(status, "DeletionBlocked")
        assert deletion["status"] == "True"
        return deletion

    deletion = await eventually(blocked, timeout=30, message="deletion blocked")
    assert "MCPRemoteProxy docs" in deletion["message"]
    assert "MCPServer alpha" in deletion["message"]

    kubectl_apply(simple_server("alpha"))  # leaves the group
    await wait_for_members(
        kube, namespace=namespace, members=[("MCPRemoteProxy", "docs")], counts=(0, 1)
    )
    assert (await kube.get(MCPGROUPS, name="team", namespace=namespace))["metadata"].get(
        "deletionTimestamp"
    )

    await kube.delete(MCPREMOTEPROXIES, name="docs", namespace=namespace)

    await eventually(
        lambda: group_gone(kube, name="team", namespace=namespace),
        timeout=60,
        message="group deleted after its last member left",
    )


async def test_a_member_of_a_missing_group_says_so_and_still_runs(
    operator: RunningOperator, kube: KubeClient, namespace: str, kubectl_apply: Any
) -> None:
    kubectl_apply(remote_proxy("lonely", groupRef={"name": "ghost"}))

    async def unresolved() -> dict[str, Any]:
        obj = await kube.get(MCPREMOTEPROXIES, name="lonely", namespace=namespace)
        status = obj.get("status") or {}
        assert status.get("phase") == "Running", status.get("message")
        return status

    status = await eventually(unresolved, timeout=60, message="running without its group")
    group_resolved = condition(status, "GroupResolved")
    assert (group_resolved["status"], group_resolved["message"]) == (
        "False",
        'MCPGroup "ghost" not found',
    )

    kubectl_apply(group("ghost"))

    async def resolved() -> bool:
        obj = await kube.get(MCPREMOTEPROXIES, name="lonely", namespace=namespace)
        return bool(condition(obj["status"], "GroupResolved")["status"] == "True")

    await eventually(resolved, timeout=30, message="GroupResolved once the group exists")

    # Without members the group goes at once (and the namespace with it after the test).
    await kube.delete(MCPREMOTEPROXIES, name="lonely", namespace=namespace)
    await kube.delete(MCPGROUPS, name="ghost", namespace=namespace)
    await eventually(
        lambda: group_gone(kube, name="ghost", namespace=namespace), timeout=60, message="gone"
    )


@pytest.mark.parametrize(
    ("file", "running"),
    [
        pytest.param("mcpgroup.yaml", {"research-papers"}, id="group"),
        pytest.param("mcpremoteproxy-token-exchange.yaml", {"docs"}, id="token-exchange"),
    ],
)
async def test_the_examples_run(
    operator: RunningOperator,
    kube: KubeClient,
    namespace: str,
    control_plane: ControlPlane,
    file: str,
    running: set[str],
) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / file))

    async def all_running() -> bool:
        for name in running:
            status = await server_status(
                kube, name=name, namespace=namespace, kind=MCPREMOTEPROXIES
            )
            assert status.get("phase") == "Running", (name, status.get("message"))
        return True

    await eventually(all_running, timeout=90, message="example remote proxies running")
    if file == "mcpgroup.yaml":
        await wait_for_members_of(
            kube,
            group_name="research",
            namespace=namespace,
            members=[("MCPRemoteProxy", "research-papers"), ("MCPServer", "research-time")],
        )
