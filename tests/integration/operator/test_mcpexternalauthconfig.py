"""An MCPExternalAuthConfig against a real apiserver: `referencedBy` lists the MCPServers and
MCPRemoteProxies using it, and a change of it rolls each referrer's RunConfig and proxy."""

from __future__ import annotations

import json
from typing import Any

import pytest
from operator_harness import RunningOperator, condition, get_or_none, simple_server
from testkit.waiting import eventually

from moorage_core.kube import CONFIGMAPS, DEPLOYMENTS, MCPEXTERNALAUTHCONFIGS, KubeClient

pytestmark = pytest.mark.integration

CHECKSUM = "moorage.dev/runconfig-checksum"


def token_exchange(client_id: str) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPExternalAuthConfig",
        "metadata": {"name": "exchange"},
        "spec": {
            "type": "tokenExchange",
            "tokenExchange": {
                "tokenUrl": "https://idp.example.com/token",
                "clientId": client_id,
                "clientSecretRef": {"name": "idp", "key": "secret"},
            },
        },
    }


async def rendered(
    kube: KubeClient, *, configmap: str, deployment: str, namespace: str
) -> tuple[str, str]:
    """The client id a referrer's RunConfig carries and its proxy pods' RunConfig checksum."""
    found = await get_or_none(kube, CONFIGMAPS, name=configmap, namespace=namespace)
    applied = await get_or_none(kube, DEPLOYMENTS, name=deployment, namespace=namespace)
    assert found is not None, configmap
    assert applied is not None, deployment
    runconfig = json.loads(found["data"]["runconfig.json"])
    template = applied["spec"]["template"]
    return (
        str(runconfig["outgoing_auth"]["token_exchange"]["client_id"]),
        str(template["metadata"]["annotations"][CHECKSUM]),
    )


async def test_referrers_are_listed_and_follow_a_change_of_the_config(
    operator: RunningOperator, kube: KubeClient, namespace: str, kubectl_apply: Any
) -> None:
    kubectl_apply(token_exchange("first"))
    kubectl_apply(
        simple_server(
            "api",
            transport="streamable-http",
            targetPort=3000,
            externalAuthConfigRef={"name": "exchange"},
        )
    )
    kubectl_apply(
        {
            "apiVersion": "moorage.dev/v1alpha1",
            "kind": "MCPRemoteProxy",
            "metadata": {"name": "api"},
            "spec": {
                "remoteUrl": "https://mcp.example.com/mcp",
                "externalAuthConfigRef": {"name": "exchange"},
            },
        }
    )
    referrers = {
        "server": {"configmap": "api-runconfig", "deployment": "api"},
        "remote": {"configmap": "api-remote-runconfig", "deployment": "api-remote-proxy"},
    }

    async def listed() -> dict[str, Any]:
        config = await kube.get(MCPEXTERNALAUTHCONFIGS, name="exchange", namespace=namespace)
        status = config.get("status") or {}
        assert status.get("referencedBy") == [
            {"kind": "MCPRemoteProxy", "name": "api"},
            {"kind": "MCPServer", "name": "api"},
        ], status
        return status

    status = await eventually(listed, timeout=30, message="referencedBy")
    assert condition(status, "Valid")["status"] == "True"

    async def all_render(client_id: str) -> dict[str, str]:
        found = {
            who: await rendered(kube, namespace=namespace, **names)
            for who, names in referrers.items()
        }
        assert {who: client for who, (client, _) in found.items()} == {
            "server": client_id,
            "remote": client_id,
        }
        return {who: checksum for who, (_, checksum) in found.items()}

    before = await eventually(lambda: all_render("first"), timeout=30, message="rendered")
    kubectl_apply(token_exchange("second"))
    after = await eventually(lambda: all_render("second"), timeout=30, message="re-rendered")
    assert all(after[who] != before[who] for who in referrers), "the proxies roll"
