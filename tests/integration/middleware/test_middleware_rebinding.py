"""DNS-rebinding protection end to end: the operator renders the proxy Service's names and
`spec.allowedHosts` into the RunConfig, and a proxy runner started from it answers those names
and refuses a rebinding attacker's `Host` and `Origin`. The apiserver refuses malformed hosts."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from testkit.mcprequests import INITIALIZE, POST_HEADERS
from testkit.waiting import eventually

from moorage_core.errors import Invalid
from moorage_core.kube import MCPSERVERS, KubeClient
from moorage_dev.cluster import ControlPlane

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))
from operator_harness import run_operator
from test_middleware_cluster import configmap_text, proxy_runner

pytestmark = pytest.mark.integration


def server(namespace: str, hosts: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPServer",
        "metadata": {"name": "time", "namespace": namespace},
        "spec": {"image": "ghcr.io/example/mcp-time:1.0", "allowedHosts": hosts},
    }


async def status_for(url: str, **headers: str) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, json=INITIALIZE, headers={**POST_HEADERS, **headers}) as resp,
    ):
        return resp.status


async def test_the_proxy_answers_its_service_names_and_refuses_a_rebinding_attacker(
    control_plane: ControlPlane, crds: list[str], kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    await kube.create(MCPSERVERS, server(namespace, ["mcp.example.com"]), namespace=namespace)
    async with run_operator(control_plane, namespaces=(namespace,)):
        text = await eventually(
            lambda: configmap_text(kube, namespace), timeout=60, message="RunConfig rendered"
        )
        service = f"mcp-time-proxy.{namespace}"
        assert json.loads(text)["allowed_hosts"] == [
            "mcp-time-proxy",
            "mcp-time-proxy:8080",
            service,
            f"{service}:8080",
            f"{service}.svc",
            f"{service}.svc:8080",
            f"{service}.svc.cluster.local",
            f"{service}.svc.cluster.local:8080",
            "mcp.example.com",
        ]
        config = tmp_path / "runconfig.json"
        config.write_text(text)
        async with proxy_runner(control_plane, config, CollectorRegistry()) as url:
            port = url.split(":")[2].split("/")[0]
            # The attacker's name resolves to the proxy: the browser sends its own Host and
            # Origin, and with either one refused nothing reaches the MCP server.
            assert await status_for(url, Host=f"evil.example:{port}") == 421
            assert (
                await status_for(
                    url, Host=f"evil.example:{port}", Origin=f"http://evil.example:{port}"
                )
                == 421
            )
            assert (
                await status_for(url, Host=f"{service}:8080", Origin="http://evil.example:8080")
                == 403
            )
            for host in ("mcp-time-proxy:8080", f"{service}.svc.cluster.local:8080"):
                assert await status_for(url, Host=host) == 200, host
            assert (
                await status_for(url, Host="mcp.example.com", Origin="https://mcp.example.com")
                == 200
            )
            assert await status_for(url) == 200, "by IP address, as a ClusterIP client does"


@pytest.mark.parametrize(
    ("host", "fragment"),
    [
        ("Evil Host", "should match"),
        ("mcp.example.com:99999", "should match"),
        (".".join(["a" * 50] * 5) + "a:443", "at most 253 characters"),
    ],
    ids=["spaces", "port", "long-name"],
)
async def test_the_apiserver_refuses_malformed_allowed_hosts(
    crds: list[str], kube: KubeClient, namespace: str, host: str, fragment: str
) -> None:
    with pytest.raises(Invalid, match=fragment):
        await kube.create(MCPSERVERS, server(namespace, [host]), namespace=namespace)
