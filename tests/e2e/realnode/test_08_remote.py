"""Step 8: a remote MCP server behind an MCPRemoteProxy with token exchange, in an MCPGroup.

The authorization server (`idpyoidc`, tests/fixtures/tokenexchange/authserver.py) and the SDK's
MCP server requiring a bearer token for its own audience (tests/e2e/remote/remote_upstream.py)
run on the host, on the real node's bridge address, which pods reach and the host owns (the
node's guards drop packets for that range coming from other machines). The webhook accepts a
plain-http OIDC issuer only on localhost, so the issuer is named `auth.localhost` (RFC 6761) and
the proxy pod maps that name to the bridge address with `hostAliases`; a real issuer is https.
A user's YAML is applied:
the token-exchange client secret, an MCPExternalAuthConfig, an MCPToolConfig, the MCPRemoteProxy
(OIDC of that issuer, Cedar, audit) and an MCPGroup with it and the stdio example MCPServer. The
`mcp` SDK on the host calls through the proxy's ClusterIP with a token of the authorization
server; the remote must see only the exchanged token.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from e2e.middleware.middlewarekit import bearer_client
from e2e.remote.remotekit import (
    AUTHSERVER,
    PROXY_AUDIENCE,
    PROXY_CLIENT,
    PROXY_SECRET,
    UPSTREAM,
    UPSTREAM_AUDIENCE,
    AuthServer,
    Upstream,
    authserver_config,
    claims_of,
    only_exchanged_tokens_reached,
    policy_applies,
)
from realkit import (
    Obj,
    cluster_ip,
    condition,
    get,
    host_process,
    remote_and_time_server_in_group,
    wait,
)
from testkit.kustomize import Install

from moorage_dev.cluster import ControlPlane
from moorage_dev.ports import free_port, is_port_open

NAMESPACE = "remote"
PROXY = "upstream"
GROUP = "team"
SERVER = "time"
MODES = ["legacy", "2026-07-28"]
ISSUER_HOST = "auth.localhost"
POLICY = 'permit(principal, action == Action::"call_tool", resource == Tool::"echo");'


@dataclass
class HostSide:
    """The authorization server and the remote MCP server, as pods reach them."""

    auth: AuthServer
    """The authorization server at the bridge address (where the test gets its token)."""
    issuer: str
    """`http://auth.localhost:<port>`: the tokens' `iss`, and where the proxy pod finds it."""
    upstream: Upstream
    bridge_ip: str
    auth_out: Path

    def exchanges(self) -> list[str]:
        """The status of each token-exchange request the authorization server answered."""
        lines = self.auth_out.read_text().splitlines()
        return [line.split()[1] for line in lines if line.startswith("EXCHANGE ")]


def listening_port(out: Path) -> int | None:
    first = out.read_text().partition("\n")[0]
    return int(first.split()[1]) if first.startswith("LISTENING ") else None


@pytest.fixture(scope="module")
def host_side(plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostSide]:
    assert plane.real_node is not None
    host = plane.real_node.bridge_ip
    tmp = tmp_path_factory.mktemp("remote")
    config = tmp / "authserver.json"
    config.write_text(json.dumps(authserver_config()))
    auth_out = tmp / "authserver.out"
    argv = [
        str(AUTHSERVER),
        *("--host", host, "--issuer-host", ISSUER_HOST, "--port", "0", "--config", str(config)),
    ]
    with host_process(argv, auth_out):
        port = wait(
            "the authorization server listening", lambda: listening_port(auth_out), timeout=60
        )
        auth = AuthServer(f"http://{host}:{port}")
        issuer = f"http://{ISSUER_HOST}:{port}"
        upstream_port = free_port(host)
        record = tmp / "upstream.log"
        upstream_argv = [
            str(UPSTREAM),
            *("--host", host, "--port", str(upstream_port), "--issuer", issuer),
            *("--jwks", auth.jwks_url, "--audience", UPSTREAM_AUDIENCE, "--record", str(record)),
        ]
        with host_process(upstream_argv, tmp / "upstream.out"):
            wait(
                "the remote MCP server listening",
                lambda: is_port_open(upstream_port, host),
                timeout=60,
            )
            upstream = Upstream(f"http://{host}:{upstream_port}/mcp", record)
            yield HostSide(auth, issuer, upstream, host, auth_out)


def manifests(side: HostSide) -> str:
    """What the user writes: the outgoing auth, the tool filter, the proxy and the group."""
    return f"""
apiVersion: moorage.dev/v1alpha1
kind: MCPExternalAuthConfig
metadata:
  name: upstream-exchange
spec:
  type: tokenExchange
  tokenExchange:
    tokenUrl: {side.auth.token_url}
    clientId: {PROXY_CLIENT}
    clientSecretRef:
      name: upstream-exchange
      key: client-secret
    clientAuthMethod: client_secret_basic
    audience: {UPSTREAM_AUDIENCE}
    scopes:
      - mcp
---
apiVersion: moorage.dev/v1alpha1
kind: MCPToolConfig
metadata:
  name: upstream-tools
spec:
  toolsFilter:
    - echo
    - secret
---
apiVersion: moorage.dev/v1alpha1
kind: MCPGroup
metadata:
  name: {GROUP}
spec:
  description: The remote and the time server.
---
apiVersion: moorage.dev/v1alpha1
kind: MCPRemoteProxy
metadata:
  name: {PROXY}
spec:
  remoteUrl: {side.upstream.url}
  allowPrivateEndpoint: true
  transport: streamable-http
  port: 8080
  oidcConfig:
    type: inline
    inline:
      issuer: {side.issuer}
      audience: {PROXY_AUDIENCE}
      jwksUrl: {side.issuer}/jwks.json
  authzConfig:
    type: inline
    inline:
      policies:
        - '{POLICY}'
  toolConfigRef:
    name: upstream-tools
  externalAuthConfigRef:
    name: upstream-exchange
  audit:
    enabled: true
  groupRef:
    name: {GROUP}
  podTemplateSpec:
    spec:
      hostAliases:
        - ip: {side.bridge_ip}
          hostnames:
            - {ISSUER_HOST}
"""


@pytest.fixture(scope="module")
def remote(
    plane: ControlPlane, installed: Install, images: dict[str, str], host_side: HostSide
) -> Iterator[str]:
    with remote_and_time_server_in_group(
        plane,
        installed,
        images,
        NAMESPACE,
        group=GROUP,
        proxy=PROXY,
        secret=("upstream-exchange", "client-secret", PROXY_SECRET),
        manifests=manifests(host_side),
    ):
        yield NAMESPACE


def proxy_url(plane: ControlPlane) -> str:
    return f"http://{cluster_ip(plane, NAMESPACE, f'mcp-{PROXY}-remote-proxy', 8080)}:8080/mcp"


def audit_records(plane: ControlPlane) -> list[Obj]:
    out = plane.kubectl("logs", "-n", NAMESPACE, f"deployment/{PROXY}-remote-proxy").stdout
    return [
        record
        for line in out.splitlines()
        if line.startswith("{") and '"mcp_audit"' in line
        for record in [json.loads(line)]
        if record.get("event") == "mcp_audit"
    ]


def wait_condition(plane: ControlPlane, kind: str, name: str, type_: str) -> Obj:
    """The object once its condition `type_` is True."""

    def holds() -> Obj | None:
        obj = get(plane, kind, "-n", NAMESPACE, name)
        found = condition(obj, type_)
        return obj if found and found["status"] == "True" else None

    return wait(f"{type_} on {kind} {name}", holds, timeout=120)


def test_the_proxy_runs_and_its_runner_reached_the_remote(plane: ControlPlane, remote: str) -> None:
    proxy = wait_condition(plane, "mcpremoteproxy", PROXY, "RemoteAvailable")
    assert proxy["status"]["phase"] == "Running"
    # The check has no caller's token to exchange: the remote's 401 is its answer.
    assert proxy["status"]["remoteCheck"]["answered"] is True
    assert condition(proxy, "Ready")["status"] == "True"  # type: ignore[index]


@pytest.mark.parametrize("mode", MODES)
async def test_a_caller_reaches_the_remote_with_an_exchanged_token_under_policy(
    plane: ControlPlane, remote: str, host_side: HostSide, mode: str
) -> None:
    caller = await host_side.auth.caller_token()
    assert claims_of(caller)["aud"] == [PROXY_AUDIENCE]
    before = len(host_side.exchanges())
    async with bearer_client(proxy_url(plane), caller, mode=mode) as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
        assert names == ["echo"]
        echoed = await client.call_tool("echo", {"text": f"hello {mode}"})
        assert not echoed.is_error
        assert echoed.content[0].text == f"hello {mode}"
        await policy_applies(client)

    # One exchange for this caller's token; its later calls are answered from the cache.
    assert host_side.exchanges()[before:] == ["200"]
    only_exchanged_tokens_reached(host_side.upstream, caller)

    def called() -> list[Obj] | None:
        records = [r for r in audit_records(plane) if r.get("method") == "tools/call"]
        echoed = [r for r in records if r.get("target") == "echo"]
        return records if echoed and [r for r in records if r.get("target") == "secret"] else None

    records = wait("the audit records of the calls in the proxy's log", called, timeout=30)
    assert {r["subject"] for r in records} == {"alice"}
    assert {r["decision"] for r in records if r["target"] == "secret"} == {"deny"}


async def test_a_caller_without_a_valid_token_gets_401(plane: ControlPlane, remote: str) -> None:
    url = proxy_url(plane)
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json={}) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        forged = {"Authorization": "Bearer not-a-token"}
        async with http.post(url, json={}, headers=forged) as resp:
            assert resp.status == 401


def test_the_group_lists_both_members_and_waits_for_them_on_delete(
    plane: ControlPlane, remote: str
) -> None:
    want = [
        {"kind": "MCPRemoteProxy", "name": PROXY, "phase": "Running"},
        {"kind": "MCPServer", "name": SERVER, "phase": "Running"},
    ]

    def listed() -> Obj | None:
        group = get(plane, "mcpgroup", "-n", remote, GROUP)
        return group if (group.get("status") or {}).get("members") == want else None

    group = wait("the group listing both members Running", listed, timeout=60)
    status = group["status"]
    assert (status["serverCount"], status["remoteProxyCount"], status["memberCount"]) == (1, 1, 2)
    assert status["phase"] == "Ready"

    plane.kubectl("delete", "mcpgroup", GROUP, "-n", remote, "--wait=false")

    group = wait_condition(plane, "mcpgroup", GROUP, "DeletionBlocked")
    assert group["status"]["phase"] == "Terminating"
    message = condition(group, "DeletionBlocked")["message"]  # type: ignore[index]
    assert PROXY in message, message
    assert SERVER in message, message

    # The members leave their group; then the deletion completes.
    leave = json.dumps([{"op": "remove", "path": "/spec/groupRef"}])
    for kind, name in (("mcpremoteproxy", PROXY), ("mcpserver", SERVER)):
        plane.kubectl("patch", kind, name, "-n", remote, "--type=json", "-p", leave)

    def gone() -> bool:
        out = plane.kubectl("get", "mcpgroup", GROUP, "-n", remote, check=False)
        return out.returncode != 0 and "NotFound" in out.stderr

    wait("the group to be deleted", gone, timeout=60)
