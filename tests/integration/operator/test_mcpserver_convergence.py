"""Level-based convergence: no write when nothing changed, rollouts only for workload changes,
and children restored after they are deleted or edited by hand."""

from __future__ import annotations

from typing import Any

import pytest
from operator_harness import (
    RunningOperator,
    children_of,
    get_or_none,
    mcp_statefulset,
    server_status,
    simple_server,
)
from testkit.waiting import eventually

from moorage_core.kube import (
    CONFIGMAPS,
    DEPLOYMENTS,
    MCPSERVERS,
    MCPTOOLCONFIGS,
    SERVICEACCOUNTS,
    SERVICES,
    STATEFULSETS,
    KubeClient,
    ResourceKind,
)

pytestmark = pytest.mark.integration

CHECKSUM = "moorage.dev/runconfig-checksum"


async def resource_versions(kube: KubeClient, *, name: str, namespace: str) -> dict[str, str]:
    versions = {}
    for kind, child in [*children_of(name), (MCPSERVERS, name)]:
        obj = await kube.get(kind, name=child, namespace=namespace)
        versions[f"{kind.kind}/{child}"] = obj["metadata"]["resourceVersion"]
    return versions


async def settled(
    kube: KubeClient, operator: RunningOperator, *, name: str, namespace: str
) -> None:
    """Wait until the server runs, its Deployment finished rolling out and the operator is idle."""

    async def check() -> bool:
        status = await server_status(kube, name=name, namespace=namespace)
        assert status.get("phase") == "Running", status.get("message")
        deployment = await kube.get(DEPLOYMENTS, name=name, namespace=namespace)
        dstatus = deployment.get("status") or {}
        assert dstatus.get("observedGeneration") == deployment["metadata"]["generation"]
        reasons = {c["type"]: c.get("reason") for c in dstatus.get("conditions") or []}
        assert reasons.get("Progressing") == "NewReplicaSetAvailable", reasons
        assert operator.is_idle()
        return True

    await eventually(check, timeout=90, message="server settled")


async def run_server(
    kube: KubeClient,
    operator: RunningOperator,
    *,
    name: str,
    namespace: str,
    apply: Any,
    **spec: Any,
) -> None:
    apply(simple_server(name, **spec))
    server = await kube.get(MCPSERVERS, name=name, namespace=namespace)
    await kube.create(STATEFULSETS, mcp_statefulset(server), namespace=namespace)
    await settled(kube, operator, name=name, namespace=namespace)


async def test_a_resync_with_nothing_changed_writes_nothing(
    operator: RunningOperator, kube: KubeClient, namespace: str, kubectl_apply: Any
) -> None:
    kubectl_apply(
        {
            "apiVersion": "moorage.dev/v1alpha1",
            "kind": "MCPToolConfig",
            "metadata": {"name": "tools"},
            "spec": {"toolsFilter": ["a"]},
        }
    )
    await run_server(
        kube,
        operator,
        name="quiet",
        namespace=namespace,
        apply=kubectl_apply,
        toolConfigRef={"name": "tools"},
    )
    versions = await resource_versions(kube, name="quiet", namespace=namespace)
    tool_config_rv = (await kube.get(MCPTOOLCONFIGS, name="tools", namespace=namespace))[
        "metadata"
    ]["resourceVersion"]
    writes = operator.requests()
    reconciles = operator.reconciles("mcpserver")

    await operator.resync()

    assert operator.reconciles("mcpserver") > reconciles
    assert operator.requests() == writes, "a resync with nothing changed made API writes"
    assert await resource_versions(kube, name="quiet", namespace=namespace) == versions
    tool_config = await kube.get(MCPTOOLCONFIGS, name="tools", namespace=namespace)
    assert tool_config["metadata"]["resourceVersion"] == tool_config_rv


async def test_an_image_change_rolls_the_proxy_but_a_tool_config_change_does_not(
    operator: RunningOperator, kube: KubeClient, namespace: str, kubectl_apply: Any
) -> None:
    tool_config = {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPToolConfig",
        "metadata": {"name": "tools"},
        "spec": {"toolsFilter": ["a"]},
    }
    kubectl_apply(tool_config)
    await run_server(
        kube,
        operator,
        name="rolling",
        namespace=namespace,
        apply=kubectl_apply,
        toolConfigRef={"name": "tools"},
    )
    before = await kube.get(DEPLOYMENTS, name="rolling", namespace=namespace)
    runconfig = await kube.get(CONFIGMAPS, name="rolling-runconfig", namespace=namespace)
    hash_before = (await server_status(kube, name="rolling", namespace=namespace))["toolConfigHash"]

    tool_config["spec"] = {"toolsFilter": ["a", "b"], "toolsOverride": {"b": {"description": "B"}}}
    kubectl_apply(tool_config)

    async def runconfig_changed() -> dict[str, Any]:
        cm = await kube.get(CONFIGMAPS, name="rolling-runconfig", namespace=namespace)
        assert cm["data"] != runconfig["data"]
        return cm

    changed = await eventually(runconfig_changed, timeout=30, message="RunConfig rewritten")
    assert '"b"' in changed["data"]["runconfig.json"]

    async def hash_updated() -> bool:
        status = await server_status(kube, name="rolling", namespace=namespace)
        config = await kube.get(MCPTOOLCONFIGS, name="tools", namespace=namespace)
        assert status["toolConfigHash"] != hash_before
        assert status["toolConfigHash"] == (config.get("status") or {}).get("configHash")
        return True

    await eventually(hash_updated, timeout=30, message="toolConfigHash follows the config")
    after_tools = await kube.get(DEPLOYMENTS, name="rolling", namespace=namespace)
    assert after_tools["spec"]["template"] == before["spec"]["template"]
    assert after_tools["metadata"]["generation"] == before["metadata"]["generation"]

    await kube.patch(
        MCPSERVERS,
        {"spec": {"image": "ghcr.io/example/mcp-echo:2.0.0"}},
        name="rolling",
        namespace=namespace,
    )

    async def rolled() -> dict[str, Any]:
        deployment = await kube.get(DEPLOYMENTS, name="rolling", namespace=namespace)
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert (
            annotations[CHECKSUM] != before["spec"]["template"]["metadata"]["annotations"][CHECKSUM]
        )
        return deployment

    deployment = await eventually(rolled, timeout=30, message="proxy rolled")
    assert deployment["metadata"]["generation"] > before["metadata"]["generation"]


async def test_a_deleted_deployment_and_a_hand_edited_service_are_restored(
    operator: RunningOperator, kube: KubeClient, namespace: str, kubectl_apply: Any
) -> None:
    kubectl_apply(simple_server("healing", port=8080))

    async def exists(kind: ResourceKind, name: str) -> dict[str, Any]:
        obj = await get_or_none(kube, kind, name=name, namespace=namespace)
        assert obj is not None
        return dict(obj)

    deployment = await eventually(lambda: exists(DEPLOYMENTS, "healing"), timeout=30)
    await kube.delete(DEPLOYMENTS, name="healing", namespace=namespace)

    async def recreated() -> bool:
        obj = await exists(DEPLOYMENTS, "healing")
        assert obj["metadata"]["uid"] != deployment["metadata"]["uid"]
        return True

    await eventually(recreated, timeout=30, message="Deployment restored")

    await eventually(lambda: exists(SERVICES, "mcp-healing-proxy"), timeout=30)
    await kube.patch(
        SERVICES,
        {
            "spec": {
                "ports": [{"name": "http", "port": 9999, "targetPort": "http", "protocol": "TCP"}]
            }
        },
        name="mcp-healing-proxy",
        namespace=namespace,
        field_manager="kubectl-edit",
    )

    async def port_restored() -> bool:
        service = await exists(SERVICES, "mcp-healing-proxy")
        assert [p["port"] for p in service["spec"]["ports"]] == [8080]
        return True

    await eventually(port_restored, timeout=30, message="Service port restored")


async def test_a_child_no_longer_wanted_is_deleted(
    operator: RunningOperator, kube: KubeClient, namespace: str, kubectl_apply: Any
) -> None:
    kubectl_apply(simple_server("own-sa"))

    async def account(present: bool) -> bool:
        found = await get_or_none(kube, SERVICEACCOUNTS, name="own-sa-sa", namespace=namespace)
        assert (found is not None) is present
        return True

    await eventually(lambda: account(True), timeout=30, message="<name>-sa created")
    kubectl_apply(simple_server("own-sa", serviceAccount="default"))
    await eventually(lambda: account(False), timeout=30, message="<name>-sa deleted")
    runconfig = await kube.get(CONFIGMAPS, name="own-sa-runconfig", namespace=namespace)
    assert '"service_account": "default"' in runconfig["data"]["runconfig.json"]
