"""Step 9: a VirtualMCPServer over a stdio MCPServer and a remote proxy, through its Service.

The remote is the SDK's MCP server (tests/e2e/remote/remote_upstream.py) on the host at the real
node's bridge address, requiring one fixed token. A user's YAML is applied: the token's Secret, an
MCPExternalAuthConfig `bearerToken` naming it, an MCPGroup, the MCPRemoteProxy and the stdio
example MCPServer (the time server and its MCPToolConfig) in that group, and a VirtualMCPServer
over the group with the `prefix` strategy. The aggregator authenticates to each member as the
member says, so it sends the token to the remote proxy (which asks none) and the proxy sends it
on. The `mcp` SDK on the host calls through the VirtualMCPServer's ClusterIP in both eras. Then
the strategy becomes `priority`, and the remote proxy leaves the group: the status and the tools
follow. Only what clients and the status show is checked, never how the aggregator keeps its
backend sessions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from e2e.remote.remotekit import UPSTREAM, Upstream
from mcp import Client
from realkit import (
    Obj,
    apply_text,
    cluster_ip,
    condition,
    dump,
    get,
    host_process,
    remote_and_time_server_in_group,
    wait,
    wait_phase,
)
from testkit.kustomize import Install
from testkit.waiting import eventually

from moorage_dev.cluster import ControlPlane
from moorage_dev.ports import free_port, is_port_open

NAMESPACE = "virtual"
GROUP = "team"
VIRTUAL = "team"
PROXY = "upstream"
SERVER = "time"
MODES = ["legacy", "2026-07-28"]
TOKEN = "remote-static-token"
TIME_TOOLS = ["convert_time", "now"]
"""The time server's tools after its own MCPToolConfig, as its proxy serves them."""
REMOTE_TOOLS = ["echo", "hidden", "secret"]


@pytest.fixture(scope="module")
def remote(plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    """The SDK's MCP server on the host, at the bridge address pods reach, requiring `TOKEN`."""
    assert plane.real_node is not None
    host = plane.real_node.bridge_ip
    tmp = tmp_path_factory.mktemp("virtual")
    port = free_port(host)
    argv = [
        str(UPSTREAM),
        *("--host", host, "--port", str(port), "--static", TOKEN),
        # The static verifier never asks the issuer; the SDK's settings want one.
        *("--issuer", f"http://{host}:9", "--record", str(tmp / "upstream.log")),
    ]
    with host_process(argv, tmp / "upstream.out"):
        wait("the remote MCP server listening", lambda: is_port_open(port, host), timeout=60)
        yield Upstream(f"http://{host}:{port}/mcp", tmp / "upstream.log")


def manifests(remote_url: str) -> str:
    """What the user writes: the outgoing auth, the group, the remote proxy in it."""
    return f"""
apiVersion: moorage.dev/v1alpha1
kind: MCPExternalAuthConfig
metadata:
  name: upstream-token
spec:
  type: bearerToken
  bearerToken:
    secretRef:
      name: upstream-token
      key: token
---
apiVersion: moorage.dev/v1alpha1
kind: MCPGroup
metadata:
  name: {GROUP}
spec:
  description: The remote and the time server, behind one endpoint.
---
apiVersion: moorage.dev/v1alpha1
kind: MCPRemoteProxy
metadata:
  name: {PROXY}
spec:
  remoteUrl: {remote_url}
  allowPrivateEndpoint: true
  transport: streamable-http
  port: 8080
  externalAuthConfigRef:
    name: upstream-token
  groupRef:
    name: {GROUP}
"""


def virtual_server(conflict_resolution: str) -> str:
    return f"""
apiVersion: moorage.dev/v1alpha1
kind: VirtualMCPServer
metadata:
  name: {VIRTUAL}
spec:
  groupRef:
    name: {GROUP}
  conflictResolution:
{conflict_resolution}
"""


PREFIX = "    strategy: prefix\n    separator: _\n"
PRIORITY = f"    strategy: priority\n    priority:\n      - {SERVER}\n      - {PROXY}\n"


@pytest.fixture(scope="module")
def virtual(
    plane: ControlPlane, installed: Install, images: dict[str, str], remote: Upstream
) -> Iterator[str]:
    with remote_and_time_server_in_group(
        plane,
        installed,
        images,
        NAMESPACE,
        group=GROUP,
        proxy=PROXY,
        secret=("upstream-token", "token", TOKEN),
        manifests=manifests(remote.url),
    ):
        try:
            apply_text(plane, NAMESPACE, virtual_server(PREFIX))
            wait_phase(plane, NAMESPACE, VIRTUAL, "Running", timeout=240, kind="virtualmcpserver")
        except AssertionError:
            print(dump(plane, NAMESPACE))
            raise
        yield NAMESPACE


def virtual_url(plane: ControlPlane) -> str:
    return f"http://{cluster_ip(plane, NAMESPACE, f'mcp-{VIRTUAL}-vmcp', 8080)}:8080/mcp"


def discovered(obj: Obj) -> list[tuple[str, str, str, int | None]]:
    """(name, kind, health, toolCount) of each backend the status lists."""
    return [
        (b["name"], b["kind"], b.get("health", "unknown"), b.get("toolCount"))
        for b in (obj.get("status") or {}).get("discoveredBackends", [])
    ]


def wait_backends(plane: ControlPlane, want: list[tuple[str, str, str, int | None]]) -> Obj:
    """The VirtualMCPServer once its status lists `want`, every backend checked."""

    def listed() -> Obj | None:
        obj = get(plane, "virtualmcpserver", "-n", NAMESPACE, VIRTUAL)
        found = condition(obj, "BackendsDiscovered")
        settled = found is not None and found["status"] == "True"
        return obj if settled and discovered(obj) == want else None

    try:
        return wait(f"the backends {want} discovered and checked", listed, timeout=120)
    except AssertionError:
        obj = get(plane, "virtualmcpserver", "-n", NAMESPACE, VIRTUAL)
        print(json.dumps(obj.get("status"), indent=1))
        print(dump(plane, NAMESPACE))
        raise


async def tool_names(plane: ControlPlane, mode: str) -> list[str]:
    async with Client(virtual_url(plane), mode=mode) as client:
        return sorted(tool.name for tool in (await client.list_tools()).tools)


async def wait_tools(plane: ControlPlane, want: list[str], mode: str = "2026-07-28") -> None:
    """Until a new client lists exactly `want` (the aggregator may be rolling out anew)."""

    async def listed() -> bool:
        try:
            names = await tool_names(plane, mode)
        except Exception as exc:  # a pod being replaced refuses or resets the connection
            raise AssertionError(f"listing failed: {exc!r}") from exc
        assert names == want, names
        return True

    await eventually(listed, timeout=180, interval=0.5, message=f"the tools {want}")


def prefixed(backend: str, tools: list[str]) -> list[str]:
    return [f"{backend}_{tool}" for tool in tools]


def test_the_virtual_server_runs_and_discovers_both_members(
    plane: ControlPlane, virtual: str
) -> None:
    obj = wait_backends(
        plane,
        [
            (SERVER, "MCPServer", "healthy", len(TIME_TOOLS)),
            (PROXY, "MCPRemoteProxy", "healthy", len(REMOTE_TOOLS)),
        ],
    )
    status = obj["status"]
    assert status["phase"] == "Running"
    assert status["backendCount"] == 2
    assert status["url"].endswith(f"mcp-{VIRTUAL}-vmcp.{NAMESPACE}.svc.cluster.local:8080/mcp")
    assert not status.get("unresolvedConflicts")


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_lists_both_backends_tools_prefixed_and_calls_them(
    plane: ControlPlane, virtual: str, remote: Upstream, mode: str
) -> None:
    await wait_tools(plane, sorted(prefixed(SERVER, TIME_TOOLS) + prefixed(PROXY, REMOTE_TOOLS)))
    async with Client(virtual_url(plane), mode=mode) as client:
        now = await client.call_tool(f"{SERVER}_now", {"timezone": "UTC"})
        assert not now.is_error, now
        assert json.loads(now.content[0].text)["timezone"] == "UTC"
        echoed = await client.call_tool(f"{PROXY}_echo", {"text": f"hello {mode}"})
        assert not echoed.is_error, echoed
        assert echoed.content[0].text == f"hello {mode}"
    # The remote proxy sent the Secret's token, whatever reached it from the aggregator.
    assert {authorization for authorization, _ in remote.received()} == {f"Bearer {TOKEN}"}


async def test_with_priority_the_tools_keep_their_own_names(
    plane: ControlPlane, virtual: str
) -> None:
    apply_text(plane, NAMESPACE, virtual_server(PRIORITY))
    try:
        await wait_tools(plane, sorted(TIME_TOOLS + REMOTE_TOOLS))
        async with Client(virtual_url(plane), mode="2026-07-28") as client:
            echoed = await client.call_tool("echo", {"text": "unprefixed"})
            assert echoed.content[0].text == "unprefixed"
    finally:
        apply_text(plane, NAMESPACE, virtual_server(PREFIX))
    await wait_tools(plane, sorted(prefixed(SERVER, TIME_TOOLS) + prefixed(PROXY, REMOTE_TOOLS)))


async def test_a_member_leaving_the_group_leaves_the_status_and_the_tools(
    plane: ControlPlane, virtual: str
) -> None:
    leave = json.dumps([{"op": "remove", "path": "/spec/groupRef"}])
    plane.kubectl("patch", "mcpremoteproxy", PROXY, "-n", virtual, "--type=json", "-p", leave)

    obj = wait_backends(plane, [(SERVER, "MCPServer", "healthy", len(TIME_TOOLS))])
    assert obj["status"]["backendCount"] == 1
    for mode in MODES:
        await wait_tools(plane, prefixed(SERVER, TIME_TOOLS), mode)
    async with Client(virtual_url(plane), mode="2026-07-28") as client:
        now = await client.call_tool(f"{SERVER}_now", {"timezone": "UTC"})
        assert not now.is_error, now
