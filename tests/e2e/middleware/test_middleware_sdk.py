"""The middleware through real SDK clients in front of `mcp-server-time` (stdio): renamed and
filtered tools, Cedar policies on claims and arguments, no bypass through legacy SSE or batches,
audit records, and a live change of the `--config` file seen by an open session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from mcp.shared.exceptions import MCPError
from middlewarekit import (
    bearer_client,
    bearer_sse_client,
    local_proxy,
    tool_names,
)
from testkit.issuer import LocalIssuer, serving_issuer
from testkit.waiting import eventually

from moorage_api.runconfig import RunConfigAuthz, RunConfigOIDC
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.config.toolpolicy import ToolOverride, ToolPolicy
from moorage_proxyrunner.policy.reload import load_local_runconfig
from moorage_proxyrunner.startup.local import LocalConfig

pytestmark = pytest.mark.e2e

MODES = ["legacy", "2026-07-28"]
POLICIES = [
    'permit(principal, action == Action::"call_tool", resource == Tool::"get_current_time") '
    'when { principal.groups.contains("time") };',
    'permit(principal, action == Action::"call_tool", resource == Tool::"convert_time") '
    'when { principal.groups.contains("time") && context.arguments.source_timezone == "UTC" };',
]
CONVERT = {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}


def oidc(issuer: LocalIssuer) -> RunConfigOIDC:
    return RunConfigOIDC(type="oidc", issuer=issuer.url, audience=issuer.audience)


async def outcome(client: Any, name: str, arguments: dict[str, Any]) -> Any:
    """What a call gets, comparable across names: the error or the result's content."""
    try:
        result = await client.call_tool(name, arguments)
    except MCPError as exc:
        return ("error", exc.error.code, exc.error.message.replace(name, "<name>"))
    texts = [c.text.replace(name, "<name>") for c in result.content]
    return ("result", result.is_error, texts)


@pytest.mark.parametrize("mode", MODES)
async def test_renamed_and_filtered_tools_behave_as_specified(mode: str) -> None:
    settings = ProxyRunnerSettings(
        port=0,
        tool_policy=ToolPolicy(
            allowed=frozenset({"now"}),
            overrides={"get_current_time": ToolOverride(name="now", description="The time now")},
        ),
    )
    async with local_proxy(settings) as proxy, bearer_client(proxy.mcp, None, mode=mode) as client:
        listed = (await client.list_tools()).tools
        assert [(t.name, t.description) for t in listed] == [("now", "The time now")]
        called = await client.call_tool("now", {"timezone": "UTC"})
        assert not called.is_error
        assert json.loads(called.content[0].text)["timezone"] == "UTC"
        nonexistent = await outcome(client, "no_such_tool", {"timezone": "UTC"})
        assert nonexistent[0] == "error" or nonexistent[1] is True, nonexistent
        assert await outcome(client, "get_current_time", {"timezone": "UTC"}) == nonexistent
        assert await outcome(client, "convert_time", CONVERT) == nonexistent


@pytest.mark.parametrize("mode", MODES)
async def test_a_group_policy_shows_and_permits_one_tool_and_denies_everyone_else(
    mode: str,
) -> None:
    async with serving_issuer() as issuer:
        settings = ProxyRunnerSettings(
            port=0, oidc=oidc(issuer), authz=RunConfigAuthz(policies=POLICIES[:1])
        )
        alice = issuer.token(sub="alice", groups=["time"])
        bob = issuer.token(sub="bob", groups=["sales"])
        async with local_proxy(settings) as proxy:
            async with bearer_client(proxy.mcp, alice, mode=mode) as client:
                assert tool_names(await client.list_tools()) == ["get_current_time"]
                assert not (
                    await client.call_tool("get_current_time", {"timezone": "UTC"})
                ).is_error
                with pytest.raises(MCPError) as denied:
                    await client.call_tool("convert_time", CONVERT)
                assert denied.value.error.code == -32003
            async with bearer_client(proxy.mcp, bob, mode=mode) as client:
                assert tool_names(await client.list_tools()) == []
                with pytest.raises(MCPError) as denied:
                    await client.call_tool("get_current_time", {"timezone": "UTC"})
                assert denied.value.error.code == -32003
            assert proxy.metric("moorage_proxy_authz_decisions_total", {"decision": "deny"}) == 2


async def test_tool_arguments_and_claims_decide_and_renames_follow_the_client_names() -> None:
    async with serving_issuer() as issuer:
        settings = ProxyRunnerSettings(
            port=0,
            oidc=oidc(issuer),
            authz=RunConfigAuthz(
                policies=[POLICIES[1].replace('Tool::"convert_time"', 'Tool::"convert"')]
            ),
            tool_policy=ToolPolicy(overrides={"convert_time": ToolOverride(name="convert")}),
        )
        token = issuer.token(groups=["time"])
        async with local_proxy(settings) as proxy, bearer_client(proxy.mcp, token) as client:
            assert tool_names(await client.list_tools()) == ["convert"]
            assert not (await client.call_tool("convert", CONVERT)).is_error
            with pytest.raises(MCPError):
                await client.call_tool("convert", {**CONVERT, "source_timezone": "Europe/Paris"})
            with pytest.raises(MCPError) as old_name:
                await client.call_tool("convert_time", CONVERT)
            with pytest.raises(MCPError) as unknown:
                await client.call_tool("nope", CONVERT)
            assert old_name.value.error.message == unknown.value.error.message.replace(
                "nope", "convert_time"
            )


async def test_legacy_sse_and_batches_cannot_bypass_the_policies() -> None:
    async with serving_issuer() as issuer:
        settings = ProxyRunnerSettings(
            port=0, oidc=oidc(issuer), authz=RunConfigAuthz(policies=POLICIES)
        )
        bob = issuer.token(sub="bob", groups=["sales"])
        async with local_proxy(settings) as proxy:
            async with bearer_sse_client(proxy.sse, bob) as client:
                assert tool_names(await client.list_tools()) == []
                with pytest.raises(MCPError) as denied:
                    await client.call_tool("get_current_time", {"timezone": "UTC"})
                assert denied.value.error.code == -32003
            batch = [
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "tools/call",
                    "params": {"name": "get_current_time", "arguments": {"timezone": "UTC"}},
                },
                {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
            ]
            headers = {
                "Authorization": f"Bearer {bob}",
                "Accept": "application/json, text/event-stream",
                "Content-Type": "application/json",
            }
            async with (
                aiohttp.ClientSession() as http,
                http.post(proxy.mcp, json=batch, headers=headers) as resp,
            ):
                answer = await resp.json()
            assert resp.status == 400
            assert answer["error"]["code"] == -32600
            assert "result" not in json.dumps(answer)


async def test_every_request_gets_an_audit_record(capsys: pytest.CaptureFixture[str]) -> None:
    async with serving_issuer() as issuer:
        settings = ProxyRunnerSettings(
            port=0, oidc=oidc(issuer), authz=RunConfigAuthz(policies=POLICIES[:1]), audit=True
        )
        async with local_proxy(settings) as proxy:
            async with bearer_client(proxy.mcp, issuer.token(groups=["time"])) as client:
                await client.call_tool("get_current_time", {"timezone": "UTC"})
                with pytest.raises(MCPError):
                    await client.call_tool("convert_time", CONVERT)
            async with aiohttp.ClientSession() as http, http.post(proxy.mcp, json={}) as resp:
                assert resp.status == 401
    records = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{") and '"mcp_audit"' in line
    ]
    calls = [
        (r["target"], r["decision"], r["status"]) for r in records if r["method"] == "tools/call"
    ]
    assert calls == [("get_current_time", "allow", 200), ("convert_time", "deny", 403)]
    assert any(r["status"] == 401 and r["outcome"] == "refused" for r in records)
    assert all(r["subject"] == "alice" for r in records if r["method"])


async def test_a_config_change_reaches_an_open_session_without_reconnecting(tmp_path: Path) -> None:
    path = tmp_path / "runconfig.json"
    path.write_text(
        json.dumps({"schema_version": "moorage/v1", "tools_filter": ["get_current_time"]})
    )
    config = LocalConfig(path=path, runconfig=load_local_runconfig(path.read_text()))
    settings = ProxyRunnerSettings(
        port=0, tool_policy=ToolPolicy(allowed=frozenset({"get_current_time"}))
    )
    heard: list[str] = []

    async def on_message(message: Any) -> None:
        root = getattr(message, "root", message)
        method = getattr(root, "method", None)
        if isinstance(method, str):
            heard.append(method)

    async with (
        local_proxy(settings, config=config) as proxy,
        bearer_client(proxy.mcp, None, mode="legacy", message_handler=on_message) as client,
    ):
        assert tool_names(await client.list_tools()) == ["get_current_time"]
        path.write_text(
            json.dumps(
                {
                    "schema_version": "moorage/v1",
                    "tools_override": {"convert_time": {"name": "convert"}},
                }
            )
        )
        await eventually(
            lambda: "notifications/tools/list_changed" in heard, message="list_changed heard"
        )
        assert sorted(tool_names(await client.list_tools())) == ["convert", "get_current_time"]
        path.write_text("{ not json")
        await eventually(
            lambda: proxy.metric("moorage_proxy_config_reloads_total", {"result": "rejected"}) == 1,
            message="bad edit refused",
        )
        assert sorted(tool_names(await client.list_tools())) == ["convert", "get_current_time"]
        assert not (await client.call_tool("convert", CONVERT)).is_error
