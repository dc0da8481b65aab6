"""What teams moving from the incumbent operator select on still selects Moorage's pods: a Service
and a NetworkPolicy written for `app: mcpserver` take in the proxy pod and the MCP server pod, and
an HTTP server has the ClusterIP Service `mcp-<name>` with ClientIP affinity.

Selection is what the apiserver and the endpoint-slice controller decide: the Services' endpoints
come from kube-controller-manager, and the NetworkPolicy's pods are listed with its own selector.
kwok makes every pod Ready and gives it an IP.
"""

from __future__ import annotations

from typing import Any

import pytest
from operator_harness import (
    RunningOperator,
    apply_workload_as_the_proxy_runner,
    simple_server,
    wait_for_phase,
)
from testkit.waiting import eventually

from moorage_core.kube import NETWORKPOLICIES, PODS, SERVICES, KubeClient, ResourceKind

pytestmark = pytest.mark.integration

ENDPOINTSLICES = ResourceKind("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")
HTTP_SERVER = {"transport": "streamable-http", "targetPort": 3001}


async def endpoint_pods(kube: KubeClient, *, service: str, namespace: str) -> set[str]:
    """Names of the ready pods behind a Service, from its EndpointSlices."""
    listed = await kube.list(
        ENDPOINTSLICES,
        namespace=namespace,
        label_selector=f"kubernetes.io/service-name={service}",
    )
    return {
        str(endpoint["targetRef"]["name"])
        for item in listed.items
        for endpoint in item.get("endpoints") or []
        if (endpoint.get("conditions") or {}).get("ready") and endpoint.get("targetRef")
    }


async def running_http_server(kube: KubeClient, *, name: str, namespace: str, apply: Any) -> None:
    apply(simple_server(name, **HTTP_SERVER))
    await apply_workload_as_the_proxy_runner(kube, name=name, namespace=namespace)
    await wait_for_phase(kube, name=name, namespace=namespace, phase="Running")


async def test_a_service_and_a_network_policy_on_app_mcpserver_select_our_pods(
    operator: RunningOperator, kube: KubeClient, namespace: str, kubectl_apply: Any
) -> None:
    await running_http_server(kube, name="web", namespace=namespace, apply=kubectl_apply)
    proxy_pods = await kube.list(
        PODS, namespace=namespace, label_selector="app.kubernetes.io/component=proxy-runner"
    )
    [proxy_pod] = [str(p["metadata"]["name"]) for p in proxy_pods.items]
    ours = {proxy_pod, "web-0"}

    kubectl_apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "team-mcp"},
            "spec": {"selector": {"app": "mcpserver"}, "ports": [{"port": 80}]},
        }
    )
    kubectl_apply(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "team-mcp"},
            "spec": {
                "podSelector": {
                    "matchLabels": {
                        "app": "mcpserver",
                        "app.kubernetes.io/name": "mcpserver",
                        "app.kubernetes.io/instance": "web",
                    }
                },
                "policyTypes": ["Ingress"],
            },
        }
    )

    async def service_selects_ours() -> bool:
        return await endpoint_pods(kube, service="team-mcp", namespace=namespace) == ours

    await eventually(service_selects_ours, timeout=60, message="team-mcp endpoints")
    policy = await kube.get(NETWORKPOLICIES, name="team-mcp", namespace=namespace)
    selector = ",".join(f"{k}={v}" for k, v in policy["spec"]["podSelector"]["matchLabels"].items())
    selected = await kube.list(PODS, namespace=namespace, label_selector=selector)
    assert {str(p["metadata"]["name"]) for p in selected.items} == ours


async def test_an_http_server_has_the_clusterip_service_mcp_name_with_client_ip_affinity(
    operator: RunningOperator, kube: KubeClient, namespace: str, kubectl_apply: Any
) -> None:
    await running_http_server(kube, name="web", namespace=namespace, apply=kubectl_apply)
    service = await kube.get(SERVICES, name="mcp-web", namespace=namespace)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["clusterIP"] not in ("", "None")
    assert service["spec"]["sessionAffinity"] == "ClientIP"
    assert service["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 1800}}
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(3001, 3001)]

    async def selects_the_mcp_pod() -> bool:
        return await endpoint_pods(kube, service="mcp-web", namespace=namespace) == {"web-0"}

    await eventually(selects_the_mcp_pod, timeout=60, message="mcp-web endpoints")


async def test_mcp_name_is_not_taken_from_another_servers_proxy_service(
    operator: RunningOperator, kube: KubeClient, namespace: str, kubectl_apply: Any
) -> None:
    # Server `web`'s proxy Service is `mcp-web-proxy`, the `mcp-<name>` of a server `web-proxy`.
    await running_http_server(kube, name="web", namespace=namespace, apply=kubectl_apply)
    kubectl_apply(simple_server("web-proxy", **HTTP_SERVER))
    await apply_workload_as_the_proxy_runner(kube, name="web-proxy", namespace=namespace)

    service = await kube.get(SERVICES, name="mcp-web-proxy", namespace=namespace)
    assert service["metadata"]["labels"]["moorage.dev/mcpserver"] == "web"
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "proxy-runner"
