"""What the proxy answers itself is still authorised and audited, and sessions keep to their
owner: resource subscriptions (legacy subscribe, modern listen), cached `initialize`, `ping`,
`logging/setLevel`, `server/discover`, resource templates, and session ids presented by another
subject. Real SDK clients in front of the conformance fixture (it has resources) or
`mcp-server-time`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from mcp import Client, MCPError
from mcp.client.sse import sse_client
from middlewarekit import assembled_proxy, bearer_client, local_proxy
from testkit.issuer import serving_issuer

from moorage_api.runconfig import RunConfigAuthz, RunConfigOIDC
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.policy.jwks import HttpJwks, JwksCache
from moorage_proxyrunner.protocol.jsonrpc import FORBIDDEN
from moorage_proxyrunner.startup.local import LocalBackend

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "conformance_server.py"
RESOURCES = LocalBackend(transport="stdio", command=(sys.executable, str(FIXTURE), "stdio"))
READABLE = "test://static-text"
WATCHED = "test://watched-resource"
READ_STATIC = (
    'permit(principal, action == Action::"read_resource", resource == Resource::"'
    + READABLE
    + '");'
)
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def resource_settings(**extra: Any) -> ProxyRunnerSettings:
    return ProxyRunnerSettings(port=0, authz=RunConfigAuthz(policies=[READ_STATIC]), **extra)


async def test_a_subscription_the_caller_may_not_read_is_refused_even_when_already_held() -> None:
    async with (
        local_proxy(resource_settings(), backend=RESOURCES) as proxy,
        Client(proxy.mcp, mode="legacy") as first,
        Client(proxy.mcp, mode="legacy") as second,
    ):
        await first.subscribe_resource(READABLE)
        await second.subscribe_resource(READABLE)
        for client in (first, second):
            with pytest.raises(MCPError) as refused:
                await client.subscribe_resource(WATCHED)
            assert refused.value.error.code == FORBIDDEN


async def test_a_listen_naming_a_resource_the_caller_may_not_read_is_refused() -> None:
    async with (
        local_proxy(resource_settings(), backend=RESOURCES) as proxy,
        Client(proxy.mcp, mode="2026-07-28") as client,
    ):
        async with client.listen(resource_subscriptions=[READABLE]) as sub:
            assert sub.honored.resource_subscriptions == [READABLE]
        with pytest.raises(MCPError) as refused:
            async with client.listen(resource_subscriptions=[READABLE, WATCHED]):
                pass
        assert refused.value.error.code == FORBIDDEN


async def test_templates_are_listed_only_when_some_uri_of_theirs_could_be_read() -> None:
    template = "test://template/{id}/data"
    shown = (
        'permit(principal, action == Action::"read_resource", resource == Resource::"'
        + template
        + '");'
    )
    async with (
        local_proxy(resource_settings(), backend=RESOURCES) as proxy,
        Client(proxy.mcp, mode="legacy") as client,
    ):
        listed = await client.list_resource_templates()
        assert listed.resource_templates == []
    settings = ProxyRunnerSettings(port=0, authz=RunConfigAuthz(policies=[shown]))
    async with (
        local_proxy(settings, backend=RESOURCES) as proxy,
        Client(proxy.mcp, mode="legacy") as client,
    ):
        listed = await client.list_resource_templates()
        assert [t.uri_template for t in listed.resource_templates] == [template]


def audit_records(out: str) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in out.splitlines()
        if line.startswith("{") and '"mcp_audit"' in line
    ]


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_requests_answered_by_the_proxy_each_get_one_audit_record(
    transport: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with local_proxy(resource_settings(audit=True), backend=RESOURCES) as proxy:
        target: Any = proxy.mcp if transport == "streamable-http" else sse_client(proxy.sse)
        async with Client(target, mode="legacy") as client:
            await client.send_ping()
            await client.set_logging_level("debug")
            await client.subscribe_resource(READABLE)
        async with Client(proxy.mcp, mode="legacy") as other:
            await other.subscribe_resource(READABLE)
            with pytest.raises(MCPError):
                await other.subscribe_resource(WATCHED)
        # `auto` probes with server/discover.
        async with (
            Client(proxy.mcp, mode="auto") as modern,
            modern.listen(resource_subscriptions=[READABLE]),
        ):
            pass
    methods = [r["method"] for r in audit_records(capsys.readouterr().out)]
    for method, count in [
        ("initialize", 2),
        ("ping", 1),
        ("logging/setLevel", 1),
        ("resources/subscribe", 3),
        ("server/discover", 1),
        ("subscriptions/listen", 1),
    ]:
        assert methods.count(method) == count, (method, methods)


async def test_a_session_id_presented_by_another_subject_is_unknown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with serving_issuer() as issuer:
        fetcher = HttpJwks(issuer=issuer.url)
        settings = ProxyRunnerSettings(
            port=0, oidc=RunConfigOIDC(type="oidc", issuer=issuer.url, audience=issuer.audience)
        )
        alice = {**HEADERS, "Authorization": f"Bearer {issuer.token(sub='alice')}"}
        mallory_token = issuer.token(sub="mallory")
        mallory = {**HEADERS, "Authorization": f"Bearer {mallory_token}"}
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        try:
            async with (
                assembled_proxy(settings, keys=JwksCache(fetcher)) as proxy,
                aiohttp.ClientSession() as http,
            ):
                async with bearer_client(proxy.mcp, issuer.token(sub="alice"), mode="legacy"):
                    pass
                initialize = {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-06-18",
                        "capabilities": {},
                        "clientInfo": {"name": "t", "version": "1"},
                    },
                }
                async with http.post(proxy.mcp, json=initialize, headers=alice) as resp:
                    assert resp.status == 200
                    session_id = resp.headers["Mcp-Session-Id"]
                unknown = {"Mcp-Session-Id": "no-such-session"}
                async with http.post(proxy.mcp, json=ping, headers={**mallory, **unknown}) as resp:
                    expected = (resp.status, await resp.json())
                owned = {"Mcp-Session-Id": session_id}
                for method in ("post", "get", "delete"):
                    kwargs: dict[str, Any] = {"json": ping} if method == "post" else {}
                    async with http.request(
                        method, proxy.mcp, headers={**mallory, **owned}, **kwargs
                    ) as resp:
                        assert resp.status == 404
                        assert (resp.status, await resp.json()) == expected
                async with http.post(proxy.mcp, json=ping, headers={**alice, **owned}) as resp:
                    assert resp.status == 200, "the owner still uses it"

                async with http.get(proxy.sse, headers=alice) as stream:
                    endpoint = ""
                    async for raw in stream.content:
                        line = raw.decode().strip()
                        if line.startswith("data:"):
                            endpoint = line[5:].strip()
                            break
                    assert "session_id=" in endpoint
                    target = proxy.base + endpoint[endpoint.index("/messages") :]
                    async with http.post(target, json=ping, headers=mallory) as resp:
                        assert resp.status == 404
                    async with http.post(target, json=ping, headers=alice) as resp:
                        assert resp.status == 202
        finally:
            await fetcher.close()
    out = capsys.readouterr().out
    assert "session_subject_mismatch" in out
    assert mallory_token not in out
