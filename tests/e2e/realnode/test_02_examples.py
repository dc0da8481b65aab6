"""Step 2: the examples in deploy/examples on real pods, used by real MCP clients on the host.

Each example MCPServer (stdio, SSE, streamable HTTP) is applied as a user applies it. The proxy
runner pod creates the StatefulSet, the MCP server pod runs on the real node, the phase reaches
Running, and the `mcp` SDK on the host lists and calls tools through the MCPServer's Service in
both protocol eras. The apiserver calls the webhook through its Service for every write. The
namespace enforces Pod Security "restricted", as many platform teams set every tenant namespace:
the MCP server pods run there with Moorage's defaults and no podTemplateSpec opt-out.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from realkit import (
    cluster_ip,
    create_namespace,
    dump,
    get,
    items,
    ready,
    token,
    wait,
    wait_phase,
)
from testkit.kustomize import Install

from moorage_dev.cluster import ControlPlane

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "deploy" / "examples"
NAMESPACE = "examples"
MODES = ["legacy", "2026-07-28"]
SERVERS = {"time": "stdio", "everything-sse": "sse", "toolbox": "streamable-http"}


@pytest.fixture(scope="module")
def examples(plane: ControlPlane, installed: Install) -> str:
    create_namespace(plane, NAMESPACE, {"pod-security.kubernetes.io/enforce": "restricted"})
    # The streamable-HTTP example admits the service account agents/research-agent only.
    create_namespace(plane, "agents")
    plane.kubectl("create", "serviceaccount", "research-agent", "-n", "agents", check=False)
    for name in (
        "mcptoolconfig.yaml",
        "mcpserver-stdio.yaml",
        "mcpserver-sse.yaml",
        "mcpserver-streamable-http.yaml",
    ):
        plane.kubectl("apply", "--server-side", "-n", NAMESPACE, "-f", str(EXAMPLES / name))
    try:
        for server in SERVERS:
            wait_phase(plane, NAMESPACE, server, "Running", timeout=240)
    except AssertionError:
        print(dump(plane, NAMESPACE))
        raise
    return NAMESPACE


def _url(plane: ControlPlane, server: str, path: str) -> str:
    return f"http://{cluster_ip(plane, NAMESPACE, f'mcp-{server}-proxy', 8080)}:8080{path}"


@contextlib.asynccontextmanager
async def bearer_client(url: str, bearer: str, mode: str) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {bearer}"}
    async with (
        create_mcp_http_client(headers=headers) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client


def _text(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


@pytest.mark.parametrize("server", SERVERS)
def test_each_example_runs_its_proxy_and_its_server_on_real_pods(
    plane: ControlPlane, examples: str, server: str
) -> None:
    assert plane.real_node is not None
    mcp = get(plane, "mcpserver", "-n", examples, server)
    assert mcp["status"]["phase"] == "Running"
    statefulset = get(plane, "statefulset", "-n", examples, server)
    assert statefulset["status"].get("readyReplicas", 0) >= 1
    selector = f"moorage.dev/mcpserver={server}"

    def all_ready() -> list[dict[str, Any]] | None:
        # Running means one ready proxy; an example with two replicas may still be starting
        # its second one on a loaded node, so wait for every pod rather than catch it midway.
        found = items(plane, "pods", "-n", examples, "-l", selector)
        not_ready = [p["metadata"]["name"] for p in found if not ready(p)]
        assert not not_ready, f"not ready yet: {not_ready}"
        return found

    found = wait(f"every pod of {server} ready", all_ready, timeout=180)
    proxies = [p for p in found if "proxyrunner" in _containers(p)]
    backends = [p for p in found if "mcp" in _containers(p)]
    assert proxies, "no proxy runner pod"
    assert backends, "no MCP server pod"
    for pod in proxies + backends:
        assert pod["spec"]["nodeName"] == plane.real_node.name


def _containers(pod: dict[str, Any]) -> set[str]:
    return {c["name"] for c in pod["spec"]["containers"]}


@pytest.mark.parametrize("mode", MODES)
async def test_stdio_example_lists_and_calls_tools_through_its_service(
    plane: ControlPlane, examples: str, mode: str
) -> None:
    async with Client(_url(plane, "time", "/mcp"), mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        # MCPToolConfig time-tools: two tools, get_current_time renamed to `now`.
        assert set(tools) == {"now", "convert_time"}
        assert tools["now"].description == "The current time in a given IANA timezone."
        result = await client.call_tool("now", {"timezone": "UTC"})
    assert not result.is_error, _text(result)
    assert json.loads(_text(result))["timezone"] == "UTC"


async def test_sse_example_lists_and_calls_tools_over_legacy_sse(
    plane: ControlPlane, examples: str
) -> None:
    # HTTP+SSE is the legacy era's transport; the proxy relays it to an SSE server as is.
    async with Client(sse_client(_url(plane, "everything-sse", "/sse")), mode="legacy") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "echo" in names
        result = await client.call_tool("echo", {"message": "over the real node"})
    assert not result.is_error, _text(result)
    assert "over the real node" in _text(result)


@pytest.mark.parametrize("mode", MODES)
async def test_streamable_http_example_authenticates_and_authorises(
    plane: ControlPlane, examples: str, mode: str
) -> None:
    url = _url(plane, "toolbox", "/mcp")
    allowed = token(plane, "agents", "research-agent", "moorage")
    async with bearer_client(url, allowed, mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        # Cedar permits call_tool on echo only; lists show what the caller may use.
        assert names == {"echo"}
        result = await client.call_tool("echo", {"text": "authorised"})
    assert not result.is_error, _text(result)
    assert "authorised" in _text(result)


async def test_streamable_http_example_refuses_other_service_accounts(
    plane: ControlPlane, examples: str
) -> None:
    plane.kubectl("create", "serviceaccount", "intruder", "-n", "agents", check=False)
    refused = token(plane, "agents", "intruder", "moorage")
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {refused}"}) as http:
        response = await http.post(
            _url(plane, "toolbox", "/mcp"),
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={"Accept": "application/json, text/event-stream"},
        )
    assert response.status_code in (401, 403), response.text


def test_the_webhook_rejects_a_bad_mcpserver_with_our_message(
    plane: ControlPlane, examples: str
) -> None:
    # A digest of 40 hex digits passes the CRD's pattern; only the webhook knows sha256 has 64.
    image = "ghcr.io/moorage-dev/mcp-server-time@sha256:" + "a" * 40
    bad = {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPServer",
        "metadata": {"name": "bad-image", "namespace": examples},
        "spec": {"image": image, "transport": "stdio", "port": 8080},
    }
    out = plane.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(bad), check=False)
    assert out.returncode != 0
    # kubectl prints the webhook's field cause as `The MCPServer "bad-image" is invalid: ...`.
    assert (
        f'spec.image: "{image}" is not a valid image reference: sha256 digest must have 64 hex '
        "digits, not 40"
    ) in out.stderr
    assert plane.kubectl("get", "mcpserver", "-n", examples, "bad-image", check=False).returncode
