"""Moorage's own pods pass Pod Security "restricted", as the apiserver's PodSecurity admission
enforces it: the proxy runner Deployment the operator makes for an MCPServer, the registry API
Deployment of an MCPRegistry, and the operator and webhook Deployments of deploy/. Each pod
template is created as a Pod (dry run) in a namespace labelled
`pod-security.kubernetes.io/enforce: restricted`, where a violation is refused rather than warned.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from testkit.kustomize import Install, find, render

from moorage_api.mcpremoteproxy import parse_mcpremoteproxy
from moorage_api.mcpserver import parse_mcpserver
from moorage_core import errors
from moorage_core.kube import NAMESPACES, PODS, SERVICEACCOUNTS, KubeClient
from moorage_operator.planning.mcpregistries.apiservice import desired_api_deployment
from moorage_operator.planning.mcpregistries.children import Owner
from moorage_operator.planning.mcpremoteproxies.children import plan_mcpremoteproxy
from moorage_operator.planning.mcpservers.children import desired_children
from moorage_operator.planning.mcpservers.references import References

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Settings:
    proxyrunner_image: str = "ghcr.io/moorage/moorage-proxyrunner:0.1.0"
    cluster_domain: str = "cluster.local"


@pytest_asyncio.fixture
async def restricted(kube: KubeClient) -> AsyncIterator[str]:
    name = f"t-restricted-{secrets.token_hex(4)}"
    await kube.create(
        NAMESPACES,
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            },
        },
    )
    try:
        yield name
    finally:
        with contextlib.suppress(errors.NotFound):
            await kube.delete(NAMESPACES, name=name, propagation_policy="Background")


async def admit_pod(kube: KubeClient, namespace: str, template: dict[str, Any]) -> None:
    """Create the template's pod (dry run): the PodSecurity admission refuses a violation with
    403; the pod's ServiceAccount is created first so that only pod security can refuse it."""
    account = template["spec"].get("serviceAccountName") or "default"
    with contextlib.suppress(errors.Conflict):
        await kube.create(
            SERVICEACCOUNTS,
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}},
            namespace=namespace,
        )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"p-{secrets.token_hex(4)}",
            "labels": template["metadata"].get("labels", {}),
        },
        "spec": template["spec"],
    }
    await kube.request(
        "POST", PODS.path(namespace=namespace), verb="create", query={"dryRun": "All"}, body=pod
    )


def proxy_runner_template(namespace: str, transport: str) -> dict[str, Any]:
    server = parse_mcpserver(
        {
            "metadata": {"name": "time", "namespace": namespace, "uid": "u-1"},
            "spec": {"image": "ghcr.io/moorage/time:1.0", "transport": transport},
        }
    )
    children = desired_children(server, settings=Settings(), references=References())
    [deployment] = [c for c in children if c["kind"] == "Deployment"]
    template: dict[str, Any] = deployment["spec"]["template"]
    return template


@pytest.mark.parametrize("transport", ["stdio", "streamable-http"])
async def test_the_proxy_runner_pod_is_restricted(
    kube: KubeClient, restricted: str, transport: str
) -> None:
    await admit_pod(kube, restricted, proxy_runner_template(restricted, transport))


async def test_the_remote_proxy_pod_is_restricted(kube: KubeClient, restricted: str) -> None:
    proxy = parse_mcpremoteproxy(
        {
            "metadata": {"name": "docs", "namespace": restricted, "uid": "u-3"},
            "spec": {
                "remoteUrl": "https://mcp.example.com/mcp",
                "headerForward": {
                    "addHeadersFromSecret": [
                        {"headerName": "X-Key", "valueSecretRef": {"name": "s", "key": "k"}}
                    ]
                },
            },
        }
    )
    plan = plan_mcpremoteproxy(proxy, settings=Settings(), references=References())
    [deployment] = [c for c in plan.children if c["kind"] == "Deployment"]
    await admit_pod(kube, restricted, deployment["spec"]["template"])


async def test_the_registry_api_pod_is_restricted(kube: KubeClient, restricted: str) -> None:
    deployment = desired_api_deployment(
        Owner(name="catalog", namespace=restricted, uid="u-2"),
        image="ghcr.io/moorage/moorage-registry-api:0.1.0",
    )
    await admit_pod(kube, restricted, deployment["spec"]["template"])


@pytest.mark.parametrize("name", ["moorage-operator", "moorage-webhook"])
async def test_the_deployed_operator_and_webhook_pods_are_restricted(
    kube: KubeClient, restricted: str, name: str
) -> None:
    deployment = find(render(Install("cluster")), "Deployment", name)
    await admit_pod(kube, restricted, deployment["spec"]["template"])


async def test_a_host_network_pod_is_refused_there(kube: KubeClient, restricted: str) -> None:
    # The checks above can fail: the same path refuses what restricted forbids.
    template = proxy_runner_template(restricted, "stdio")
    template["spec"]["hostNetwork"] = True
    with pytest.raises(errors.Forbidden, match="violates PodSecurity"):
        await admit_pod(kube, restricted, template)
