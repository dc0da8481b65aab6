"""An MCPRemoteProxy against a real apiserver: its children (no StatefulSet), a RunConfig with the
remote endpoint and outgoing authentication but no secret value, the Deployment's Secret-backed
env, its phase under kwok, `RemoteAvailable` following the proxy runner's `remoteCheck`, and no
write when nothing changed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from operator_harness import (
    RunningOperator,
    condition,
    get_or_none,
    server_status,
    wait_for_phase,
)
from testkit.waiting import eventually

from moorage_core.kube import (
    CONFIGMAPS,
    DEPLOYMENTS,
    MCPEXTERNALAUTHCONFIGS,
    MCPREMOTEPROXIES,
    MERGE_PATCH,
    ROLEBINDINGS,
    ROLES,
    SECRETS,
    SERVICEACCOUNTS,
    SERVICES,
    STATEFULSETS,
    KubeClient,
)

pytestmark = pytest.mark.integration

SECRET_VALUE = "s3cr3t-token-never-in-a-configmap"


def remote_children(name: str) -> list[tuple[Any, str]]:
    return [
        (SERVICEACCOUNTS, f"{name}-remote-proxy"),
        (ROLES, f"{name}-remote-proxy"),
        (ROLEBINDINGS, f"{name}-remote-proxy"),
        (CONFIGMAPS, f"{name}-remote-runconfig"),
        (DEPLOYMENTS, f"{name}-remote-proxy"),
        (SERVICES, f"mcp-{name}-remote-proxy"),
    ]


def remote_proxy(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPRemoteProxy",
        "metadata": {"name": name},
        "spec": {"remoteUrl": "https://mcp.example.com/mcp", **spec},
    }


def auth_config(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPExternalAuthConfig",
        "metadata": {"name": name},
        "spec": spec,
    }


def bearer(secret: str = "upstream", key: str = "token") -> dict[str, Any]:
    return {"type": "bearerToken", "bearerToken": {"secretRef": {"name": secret, "key": key}}}


async def proxy_status(kube: KubeClient, *, name: str, namespace: str) -> dict[str, Any]:
    return await server_status(kube, name=name, namespace=namespace, kind=MCPREMOTEPROXIES)


async def wait_for_proxy(
    kube: KubeClient, *, name: str, namespace: str, phase: str
) -> dict[str, Any]:
    return await wait_for_phase(
        kube, name=name, namespace=namespace, phase=phase, kind=MCPREMOTEPROXIES
    )


async def patch_remote_check(kube: KubeClient, *, name: str, namespace: str, **check: Any) -> None:
    """What the proxy runner does after checking the remote: a merge patch of remoteCheck."""
    await kube.patch(
        MCPREMOTEPROXIES,
        {"status": {"remoteCheck": {"checkedAt": "2026-12-06T13:00:00Z", **check}}},
        name=name,
        namespace=namespace,
        subresource="status",
        content_type=MERGE_PATCH,
        field_manager="moorage-proxyrunner",
    )


async def test_a_remote_proxy_gets_its_children_runs_and_follows_the_remote_check(
    operator: RunningOperator, kube: KubeClient, namespace: str, kubectl_apply: Any
) -> None:
    await kube.create(
        SECRETS,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "upstream"},
            "stringData": {"token": SECRET_VALUE, "tenant": SECRET_VALUE},
        },
        namespace=namespace,
    )
    kubectl_apply(auth_config("upstream-auth", **bearer()))
    kubectl_apply(
        remote_proxy(
            "docs",
            externalAuthConfigRef={"name": "upstream-auth"},
            headerForward={
                "addHeaders": [{"name": "X-Team", "value": "a"}],
                "addHeadersFromSecret": [
                    {
                        "headerName": "X-Tenant",
                        "valueSecretRef": {"name": "upstream", "key": "tenant"},
                    }
                ],
            },
        )
    )
    proxy = await kube.get(MCPREMOTEPROXIES, name="docs", namespace=namespace)

    async def all_children() -> list[dict[str, Any]]:
        found = [
            await get_or_none(kube, kind, name=child, namespace=namespace)
            for kind, child in remote_children("docs")
        ]
        assert all(found), [
            c for (_, c), f in zip(remote_children("docs"), found, strict=True) if not f
        ]
        return [f for f in found if f]

    children = await eventually(all_children, timeout=30, message="children created")
    labels = {
        "app.kubernetes.io/name": "mcpremoteproxy",
        "app.kubernetes.io/instance": "docs",
        "app.kubernetes.io/managed-by": "moorage",
        "app.kubernetes.io/part-of": "moorage",
        "moorage.dev/mcpremoteproxy": "docs",
    }
    for child in children:
        meta = child["metadata"]
        assert {k: meta["labels"].get(k) for k in labels} == labels, child["kind"]
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "moorage.dev/v1alpha1",
                "kind": "MCPRemoteProxy",
                "name": "docs",
                "uid": proxy["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        managers = {m["manager"] for m in meta["managedFields"] if m["operation"] == "Apply"}
        assert managers == {"moorage-operator"}, child["kind"]
    by_kind = {c["kind"]: c for c in children if c["kind"] != "ServiceAccount"}
    assert by_kind["Role"]["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["docs-remote-runconfig"],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": ["moorage.dev"],
            "resources": ["mcpremoteproxies/status"],
            "resourceNames": ["docs"],
            "verbs": ["patch"],
        },
    ]
    assert await get_or_none(kube, STATEFULSETS, name="docs", namespace=namespace) is None

    configmap = by_kind["ConfigMap"]
    assert SECRET_VALUE not in json.dumps(configmap)
    runconfig = json.loads(configmap["data"]["runconfig.json"])
    assert runconfig["image"] == ""
    assert runconfig["owner"]["kind"] == "MCPRemoteProxy"
    assert runconfig["remote"] == {
        "url": "https://mcp.example.com/mcp",
        "transport": "streamable-http",
        "allow_private_endpoint": False,
        "headers": [
            {"name": "X-Team", "value": "a", "value_from": None},
            {
                "name": "X-Tenant",
                "value": None,
                "value_from": {
                    "env": "MOORAGE_HEADER_0",
                    "secret_key_ref": {"name": "upstream", "key": "tenant"},
                },
            },
        ],
    }
    assert runconfig["outgoing_auth"]["type"] == "bearerToken"
    assert runconfig["outgoing_auth"]["bearer_token"] == {
        "env": "MOORAGE_OUTGOING_TOKEN",
        "secret_key_ref": {"name": "upstream", "key": "token"},
    }
    container = by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == "proxyrunner"
    secret_env = {
        e["name"]: e["valueFrom"]
        for e in container["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert secret_env == {
        "MOORAGE_HEADER_0": {"secretKeyRef": {"name": "upstream", "key": "tenant"}},
        "MOORAGE_OUTGOING_TOKEN": {"secretKeyRef": {"name": "upstream", "key": "token"}},
    }
    assert (
        by_kind["Deployment"]["spec"]["template"]["spec"]["serviceAccountName"]
        == "docs-remote-proxy"
    )
    assert by_kind["Service"]["spec"]["ports"][0]["port"] == 8080

    status = await wait_for_proxy(kube, name="docs", namespace=namespace, phase="Running")
    assert status["url"] == f"http://mcp-docs-remote-proxy.{namespace}.svc.cluster.local:8080/mcp"
    assert status["readyReplicas"] == 1
    assert condition(status, "RemoteAvailable")["reason"] == "NotChecked"
    assert condition(status, "RemoteAvailable")["status"] == "Unknown"

    async def referenced() -> bool:
        config = await kube.get(MCPEXTERNALAUTHCONFIGS, name="upstream-auth", namespace=namespace)
        assert (config.get("status") or {}).get("referencedBy") == [
            {"kind": "MCPRemoteProxy", "name": "docs"}
        ]
        assert condition(config["status"], "Valid")["status"] == "True"
        return True

    await eventually(referenced, timeout=30, message="referencedBy")

    await patch_remote_check(
        kube,
        name="docs",
        namespace=namespace,
        answered=True,
        serverName="docs",
        protocolVersion="2025-11-25",
    )

    async def available() -> dict[str, Any]:
        status = await proxy_status(kube, name="docs", namespace=namespace)
        remote = condition(status, "RemoteAvailable")
        assert (remote["status"], remote["reason"]) == ("True", "Answered"), remote
        return status

    status = await eventually(available, timeout=30, message="RemoteAvailable True")
    assert status["remoteCheck"]["serverName"] == "docs", "the operator keeps the runner's field"

    await patch_remote_check(
        kube, name="docs", namespace=namespace, answered=False, message="connection refused"
    )

    async def unreachable() -> bool:
        remote = condition(
            await proxy_status(kube, name="docs", namespace=namespace), "RemoteAvailable"
        )
        assert (remote["status"], remote["reason"], remote["message"]) == (
            "False",
            "Unreachable",
            "connection refused",
        )
        return True

    await eventually(unreachable, timeout=30, message="RemoteAvailable False")

    # Nothing changed: a resync writes nothing.
    await eventually(operator.is_idle, timeout=30, message="operator idle")
    writes = operator.requests()
    await operator.resync()
    assert operator.requests() == writes, "a resync with nothing changed made API writes"

    # A deleted child comes back.
    old = await kube.get(SERVICES, name="mcp-docs-remote-proxy", namespace=namespace)
    await kube.delete(SERVICES, name="mcp-docs-remote-proxy", namespace=namespace)

    async def restored() -> bool:
        service = await get_or_none(
            kube, SERVICES, name="mcp-docs-remote-proxy", namespace=namespace
        )
        return service is not None and service["metadata"]["uid"] != old["metadata"]["uid"]

    await eventually(restored, timeout=30, message="Service restored")


async def test_a_missing_auth_config_fails_the_proxy_until_it_appears_and_a_change_rolls_it(
    operator: RunningOperator, kube: KubeClient, namespace: str, kubectl_apply: Any
) -> None:
    kubectl_apply(remote_proxy("late", externalAuthConfigRef={"name": "later"}))
    status = await wait_for_proxy(kube, name="late", namespace=namespace, phase="Failed")
    assert 'MCPExternalAuthConfig "later" not found' in status["message"]
    assert condition(status, "AuthConfigValid")["reason"] == "ExternalAuthConfigNotFound"

    kubectl_apply(auth_config("later", **bearer()))
    await wait_for_proxy(kube, name="late", namespace=namespace, phase="Running")

    async def checksum() -> str:
        deployment = await kube.get(DEPLOYMENTS, name="late-remote-proxy", namespace=namespace)
        return str(
            deployment["spec"]["template"]["metadata"]["annotations"][
                "moorage.dev/runconfig-checksum"
            ]
        )

    before = await checksum()
    kubectl_apply(auth_config("later", **bearer(key="rotated")))

    async def rolled() -> bool:
        configmap = await kube.get(CONFIGMAPS, name="late-remote-runconfig", namespace=namespace)
        runconfig = json.loads(configmap["data"]["runconfig.json"])
        assert runconfig["outgoing_auth"]["bearer_token"]["secret_key_ref"]["key"] == "rotated"
        return await checksum() != before

    await eventually(rolled, timeout=30, message="RunConfig and Deployment follow the config")
