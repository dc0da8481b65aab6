"""References: a missing MCPToolConfig or ConfigMap fails the server naming it, and its arrival
heals it; invalid input fails without a retry loop; a referenced MCPToolConfig cannot be deleted
until nothing references it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from operator_harness import (
    RunningOperator,
    condition,
    get_or_none,
    server_status,
    simple_server,
)
from testkit.waiting import eventually

from moorage_core.kube import (
    CONFIGMAPS,
    DEPLOYMENTS,
    MCPSERVERS,
    MCPTOOLCONFIGS,
    KubeClient,
)

pytestmark = pytest.mark.integration

FINALIZER = "moorage.dev/toolconfig-protection"


def tool_config(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPToolConfig",
        "metadata": {"name": name},
        "spec": spec,
    }


async def wait_status(kube: KubeClient, *, name: str, namespace: str, check: Any) -> dict[str, Any]:
    async def reached() -> dict[str, Any]:
        status = await server_status(kube, name=name, namespace=namespace)
        assert status, "no status yet"
        assert check(status), status.get("message")
        return status

    return await eventually(reached, timeout=30, message=f"status of {name}")


async def test_a_missing_tool_config_fails_the_server_until_it_appears(
    operator: RunningOperator, kube: KubeClient, namespace: str, kubectl_apply: Any
) -> None:
    kubectl_apply(simple_server("waiting", toolConfigRef={"name": "later"}))
    status = await wait_status(
        kube, name="waiting", namespace=namespace, check=lambda s: s.get("phase") == "Failed"
    )
    assert status["message"] == 'MCPToolConfig "later" not found'
    resolved = condition(status, "ToolConfigResolved")
    assert (resolved["status"], resolved["reason"]) == ("False", "ToolConfigNotFound")
    assert await get_or_none(kube, DEPLOYMENTS, name="waiting", namespace=namespace) is None

    kubectl_apply(tool_config("later", toolsFilter=["x"]))
    status = await wait_status(
        kube, name="waiting", namespace=namespace, check=lambda s: s.get("phase") == "Pending"
    )
    assert condition(status, "ToolConfigResolved")["status"] == "True"
    assert await get_or_none(kube, DEPLOYMENTS, name="waiting", namespace=namespace) is not None


@pytest.mark.parametrize(
    ("section", "reference", "key", "document"),
    [
        pytest.param(
            "oidcConfig",
            {"type": "configMap", "configMap": {"name": "idp"}},
            "oidc.json",
            {"issuer": "https://idp.example", "audience": "mcp"},
            id="oidc",
        ),
        pytest.param(
            "authzConfig",
            {"type": "configMap", "configMap": {"name": "idp"}},
            "authz.json",
            {"policies": ["permit(principal, action, resource);"]},
            id="authz",
        ),
    ],
)
async def test_a_missing_configmap_fails_the_server_until_it_appears(
    operator: RunningOperator,
    kube: KubeClient,
    namespace: str,
    kubectl_apply: Any,
    section: str,
    reference: dict[str, Any],
    key: str,
    document: dict[str, Any],
) -> None:
    kubectl_apply(simple_server("auth", **{section: reference}))
    status = await wait_status(
        kube, name="auth", namespace=namespace, check=lambda s: s.get("phase") == "Failed"
    )
    assert status["message"] == f'ConfigMap "idp" not found (spec.{section}.configMap)'
    assert condition(status, "AuthConfigValid")["reason"] == "ConfigMapNotFound"

    kubectl_apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "idp"}, "data": {key: "{"}}
    )
    status = await wait_status(
        kube,
        name="auth",
        namespace=namespace,
        check=lambda s: condition(s, "AuthConfigValid")["reason"] != "ConfigMapNotFound",
    )
    assert status["phase"] == "Failed"
    assert "holds an invalid" in status["message"]

    kubectl_apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "idp"},
            "data": {key: json.dumps(document)},
        }
    )
    status = await wait_status(
        kube, name="auth", namespace=namespace, check=lambda s: s.get("phase") == "Pending"
    )
    assert condition(status, "AuthConfigValid")["status"] == "True"
    runconfig = await kube.get(CONFIGMAPS, name="auth-runconfig", namespace=namespace)
    rendered = json.loads(runconfig["data"]["runconfig.json"])
    assert rendered["oidc" if section == "oidcConfig" else "authz"] is not None


async def test_an_invalid_spec_fails_once_and_is_not_retried(
    operator: RunningOperator, kube: KubeClient, namespace: str, kubectl_apply: Any
) -> None:
    # Without the webhook the apiserver stores a pod template the operator cannot use.
    kubectl_apply(
        simple_server("broken", podTemplateSpec={"spec": {"containers": [{"image": "x"}]}})
    )
    status = await wait_status(
        kube, name="broken", namespace=namespace, check=lambda s: s.get("phase") == "Failed"
    )
    assert (
        status["message"]
        == "Invalid pod template: spec.podTemplateSpec.spec.containers[0].name: required"
    )
    valid = condition(status, "PodTemplateValid")
    assert (valid["status"], valid["reason"]) == ("False", "PodTemplateInvalid")
    await eventually(operator.is_idle, timeout=30)
    assert (
        operator.sample(
            "moorage_controller_terminal_reconcile_errors_total", controller="mcpserver"
        )
        >= 1
    )
    assert operator.sample("moorage_workqueue_retries_total", name="mcpserver") == 0

    kubectl_apply(simple_server("broken"))
    await wait_status(
        kube, name="broken", namespace=namespace, check=lambda s: s.get("phase") == "Pending"
    )


async def test_a_referenced_tool_config_cannot_be_deleted_until_unreferenced(
    operator: RunningOperator, kube: KubeClient, namespace: str, kubectl_apply: Any
) -> None:
    kubectl_apply(tool_config("shared", toolsFilter=["a"]))
    kubectl_apply(simple_server("user-a", toolConfigRef={"name": "shared"}))
    kubectl_apply(simple_server("user-b", toolConfigRef={"name": "shared"}))

    async def protected() -> dict[str, Any]:
        obj = await kube.get(MCPTOOLCONFIGS, name="shared", namespace=namespace)
        assert FINALIZER in obj["metadata"].get("finalizers", [])
        status = obj.get("status") or {}
        assert condition(status, "Valid")["status"] == "True"
        assert (
            condition(status, "DeletionBlocked")["message"]
            == "Referenced by MCPServers user-a, user-b"
        )
        return obj

    obj = await eventually(protected, timeout=30, message="finalizer and status")
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert len(obj["status"]["configHash"]) == 16

    await kube.delete(MCPTOOLCONFIGS, name="shared", namespace=namespace)

    async def blocked() -> bool:
        obj = await kube.get(MCPTOOLCONFIGS, name="shared", namespace=namespace)
        assert obj["metadata"].get("deletionTimestamp")
        blocked = condition(obj.get("status") or {}, "DeletionBlocked")
        assert (blocked["status"], blocked["message"]) == (
            "True",
            "Deletion is blocked: referenced by MCPServers user-a, user-b",
        )
        return True

    await eventually(blocked, timeout=30, message="deletion blocked")
    await kube.delete(MCPSERVERS, name="user-a", namespace=namespace)

    async def one_left() -> bool:
        obj = await kube.get(MCPTOOLCONFIGS, name="shared", namespace=namespace)
        message = condition(obj.get("status") or {}, "DeletionBlocked")["message"]
        assert message == "Deletion is blocked: referenced by MCPServers user-b"
        return True

    await eventually(one_left, timeout=30, message="referrer list updated")
    kubectl_apply(simple_server("user-b"))

    async def gone() -> bool:
        assert await get_or_none(kube, MCPTOOLCONFIGS, name="shared", namespace=namespace) is None
        return True

    await eventually(gone, timeout=30, message="tool config deleted once unreferenced")


async def test_a_child_the_apiserver_rejects_fails_the_server_without_retries(
    operator: RunningOperator, kube: KubeClient, namespace: str, kubectl_apply: Any
) -> None:
    # The CRD cannot check label syntax inside resourceOverrides; the apiserver does on the Service.
    overrides = {"proxyService": {"labels": {"not a label!": "x"}}}
    kubectl_apply(simple_server("rejected", resourceOverrides=overrides))
    status = await wait_status(
        kube, name="rejected", namespace=namespace, check=lambda s: s.get("phase") == "Failed"
    )
    assert status["message"].startswith("Could not apply Service mcp-rejected-proxy: 422 Invalid")
    await eventually(operator.is_idle, timeout=30)
    assert operator.sample("moorage_workqueue_retries_total", name="mcpserver") == 0
    assert await get_or_none(kube, DEPLOYMENTS, name="rejected", namespace=namespace) is not None

    kubectl_apply(simple_server("rejected"))
    await wait_status(
        kube, name="rejected", namespace=namespace, check=lambda s: s.get("phase") == "Pending"
    )
