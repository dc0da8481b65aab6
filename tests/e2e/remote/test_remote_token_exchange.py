"""A remote MCP server behind the proxy with RFC 8693 token exchange, end to end on loopback.

A real authorization server (`idpyoidc`) issues the caller's token and exchanges it; the
remote is the `mcp` SDK's server requiring a token for its own audience; the proxy runs in
local mode from a RunConfig with oidc, Cedar, a tool filter, audit and `tokenExchange`; the
client is the SDK's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from e2e.middleware.middlewarekit import bearer_client
from e2e.proxy.proxykit import initialize_request, running_proxy
from remotekit import (
    PROXY_AUDIENCE,
    PROXY_CLIENT,
    PROXY_SECRET,
    UPSTREAM_AUDIENCE,
    AuthServer,
    authorization_server,
    claims_of,
    only_exchanged_tokens_reached,
    policy_applies,
    remote_upstream,
    runconfig_file,
)

from moorage_proxyrunner.policy.chain import tool_policy_from_runconfig
from moorage_proxyrunner.startup.local import LocalBackend, LocalConfig

pytestmark = pytest.mark.e2e

MODES = ["legacy", "2026-07-28"]
POLICY = 'permit(principal, action == Action::"call_tool", resource == Tool::"echo");'
SECRET_ENV = "MOORAGE_TEST_EXCHANGE_SECRET"


def exchange_config(
    tmp_path: Path, server: AuthServer, url: str, *, secret_env: str = SECRET_ENV
) -> LocalConfig:
    return runconfig_file(
        tmp_path,
        remote={"url": url, "transport": "streamable-http", "allow_private_endpoint": True},
        oidc={
            "type": "oidc",
            "issuer": server.base,
            "audience": PROXY_AUDIENCE,
            "jwks_url": server.jwks_url,
        },
        authz={"policies": [POLICY]},
        tools_filter=["echo", "secret"],
        audit={"enabled": True},
        outgoing_auth={
            "type": "tokenExchange",
            "config_name": "exchange",
            "token_exchange": {
                "token_url": server.token_url,
                "client_id": PROXY_CLIENT,
                "client_secret": {"env": secret_env},
                "audience": UPSTREAM_AUDIENCE,
                "scopes": ["mcp"],
            },
        },
    )


def proxy_settings(config: LocalConfig) -> dict[str, Any]:
    rc = config.runconfig
    return {
        "oidc": rc.oidc,
        "authz": rc.authz,
        "audit": rc.audit.enabled,
        "tool_policy": tool_policy_from_runconfig(rc),
    }


def backend(config: LocalConfig) -> LocalBackend:
    remote = config.runconfig.remote
    assert remote is not None
    return LocalBackend(transport=remote.transport, target_urls=(remote.url,))


def audit_records(out: str) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in out.splitlines()
        if line.startswith("{") and '"mcp_audit"' in line
    ]


@pytest.mark.parametrize("mode", MODES)
async def test_the_remote_sees_only_the_exchanged_token_and_policy_applies_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    monkeypatch.setenv(SECRET_ENV, PROXY_SECRET)
    async with authorization_server(tmp_path) as server:
        upstream_options = ("--jwks", server.jwks_url, "--audience", UPSTREAM_AUDIENCE)
        async with remote_upstream(tmp_path, server.base, *upstream_options) as upstream:
            config = exchange_config(tmp_path, server, upstream.url)
            caller = await server.caller_token()
            assert claims_of(caller)["aud"] == [PROXY_AUDIENCE]
            async with running_proxy(
                backend(config), config=config, **proxy_settings(config)
            ) as proxy:
                async with bearer_client(proxy.mcp, caller, mode=mode) as client:
                    names = [tool.name for tool in (await client.list_tools()).tools]
                    assert names == ["echo"]
                    echoed = await client.call_tool("echo", {"text": "hello"})
                    assert not echoed.is_error
                    assert echoed.content[0].text == "hello"
                    again = await client.call_tool("echo", {"text": "again"})
                    assert again.content[0].text == "again"
                    await policy_applies(client)
                # One exchange for the caller's token, every later request from the cache.
                assert server.exchanges == ["200"]
                assert proxy.metric("moorage_proxy_token_exchanges_total", {"result": "ok"}) == 1
                assert proxy.metric("moorage_proxy_token_exchange_cache_hits_total") >= 2

                async with (
                    aiohttp.ClientSession() as http,
                    http.post(proxy.mcp, json={}) as resp,
                ):
                    assert resp.status == 401
                    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    only_exchanged_tokens_reached(upstream, caller)
    records = audit_records(capsys.readouterr().out)
    called = [r for r in records if r.get("method") == "tools/call"]
    assert called
    assert {r["subject"] for r in called} == {"alice"}
    assert [r.get("hidden") for r in called if r["target"] == "hidden"] == [True]
    assert [r["decision"] for r in called if r["target"] == "secret"] == ["deny"]


async def test_a_refused_exchange_is_a_403_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(SECRET_ENV, "not-the-secret")
    async with authorization_server(tmp_path) as server:
        upstream_options = ("--jwks", server.jwks_url, "--audience", UPSTREAM_AUDIENCE)
        async with remote_upstream(tmp_path, server.base, *upstream_options) as upstream:
            config = exchange_config(tmp_path, server, upstream.url)
            caller = await server.caller_token()
            async with running_proxy(
                backend(config), config=config, **proxy_settings(config)
            ) as proxy:
                headers = {
                    "Authorization": f"Bearer {caller}",
                    "Accept": "application/json, text/event-stream",
                }
                initialize = initialize_request()
                async with (
                    aiohttp.ClientSession() as http,
                    http.post(proxy.mcp, json=initialize, headers=headers) as resp,
                ):
                    assert resp.status == 403
                    answer = await resp.json()
                assert "invalid_client" in answer["error"]["message"]
                assert (
                    proxy.metric("moorage_proxy_token_exchanges_total", {"result": "refused"}) == 1
                )
    assert all(f"Bearer {caller}" != a for a, _ in upstream.received())
    records = [r for r in audit_records(capsys.readouterr().out) if r["event"] == "mcp_audit"]
    refused = [r for r in records if r.get("method") == "initialize"]
    assert [(r["subject"], r["status"], r["error_code"]) for r in refused] == [
        ("alice", 403, -32003)
    ]
