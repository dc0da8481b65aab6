"""Sessions relayed to an HTTP MCP server keep to the subject that opened them: another subject
presenting the id (POST, GET and DELETE on /mcp, POST on /messages) gets the 404 an unknown
session gets, and the owner carries on. The test OIDC issuer's `alice` and `mallory` in front of
the toolbox fixture served over streamable HTTP and over legacy HTTP+SSE by the `mcp` SDK."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from e2e.proxy.proxykit import serving_toolbox
from middlewarekit import (
    INITIALIZE,
    Proxy,
    assembled_proxy,
    bearer_client,
    bearer_sse_client,
    read_endpoint,
)
from testkit.issuer import LocalIssuer, serving_issuer

from moorage_api.runconfig import RunConfigOIDC
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.policy.jwks import HttpJwks, JwksCache
from moorage_proxyrunner.startup.local import LocalBackend

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
PING = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


@contextlib.asynccontextmanager
async def proxied(transport: str) -> AsyncIterator[tuple[LocalIssuer, Proxy]]:
    """The toolbox on `transport` ("http" or "sse") behind the proxy, with OIDC on."""
    async with serving_issuer() as issuer, serving_toolbox(transport) as url:
        fetcher = HttpJwks(issuer=issuer.url)
        settings = ProxyRunnerSettings(
            port=0, oidc=RunConfigOIDC(type="oidc", issuer=issuer.url, audience=issuer.audience)
        )
        kind = "sse" if transport == "sse" else "streamable-http"
        backend = LocalBackend(transport=kind, target_urls=(url,))
        try:
            async with assembled_proxy(settings, keys=JwksCache(fetcher), backend=backend) as proxy:
                yield issuer, proxy
        finally:
            await fetcher.close()


def bearer(token: str) -> dict[str, str]:
    return {**HEADERS, "Authorization": f"Bearer {token}"}


async def test_a_streamable_http_session_is_unknown_to_another_subject(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with proxied("http") as (issuer, proxy), aiohttp.ClientSession() as http:
        alice_token = issuer.token(sub="alice")
        mallory_token = issuer.token(sub="mallory")
        alice, mallory = bearer(alice_token), bearer(mallory_token)
        async with bearer_client(proxy.mcp, alice_token, mode="legacy") as client:
            await client.send_ping()

        async with http.post(proxy.mcp, json=INITIALIZE, headers=alice) as resp:
            assert resp.status == 200
            session_id = resp.headers["Mcp-Session-Id"]
        owned = {"Mcp-Session-Id": session_id}
        async with http.post(proxy.mcp, json=INITIALIZED, headers={**alice, **owned}) as resp:
            assert resp.status == 202

        unknown = {"Mcp-Session-Id": "no-such-session"}
        for method in ("post", "get", "delete"):
            kwargs: dict[str, Any] = {"json": PING} if method == "post" else {}
            async with http.request(
                method, proxy.mcp, headers={**mallory, **unknown}, **kwargs
            ) as resp:
                expected = (resp.status, await resp.read())
            async with http.request(
                method, proxy.mcp, headers={**mallory, **owned}, **kwargs
            ) as resp:
                assert resp.status == 404, method
                assert (resp.status, await resp.read()) == expected, method

        async with http.post(proxy.mcp, json=PING, headers={**alice, **owned}) as resp:
            assert resp.status == 200, "the owner still uses it"
            assert '"result"' in await resp.text()
        async with http.get(proxy.mcp, headers={**alice, **owned}) as resp:
            assert resp.status == 200
            assert resp.content_type == "text/event-stream"
        async with http.delete(proxy.mcp, headers={**alice, **owned}) as resp:
            assert resp.status == 200, "the owner ends it"
    out = capsys.readouterr().out
    assert out.count("session_subject_mismatch") == 3
    assert '"owner": "alice"' in out or "owner=alice" in out
    assert mallory_token not in out
    assert alice_token not in out


async def test_a_legacy_sse_session_is_unknown_to_another_subject(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with proxied("sse") as (issuer, proxy), aiohttp.ClientSession() as http:
        alice_token = issuer.token(sub="alice")
        mallory_token = issuer.token(sub="mallory")
        alice, mallory = bearer(alice_token), bearer(mallory_token)
        async with bearer_sse_client(proxy.sse, alice_token) as client:
            await client.send_ping()

        async with http.get(proxy.sse, headers=alice) as stream:
            target = await read_endpoint(stream, proxy.base)
            unknown = f"{proxy.base}/messages?session_id=no-such-session"
            async with http.post(unknown, json=PING, headers=mallory) as resp:
                expected = (resp.status, await resp.read())
            async with http.post(target, json=PING, headers=mallory) as resp:
                assert resp.status == 404
                assert (resp.status, await resp.read()) == expected
            async with http.post(target, json=INITIALIZE, headers=alice) as resp:
                assert resp.status == 202, "the owner still uses it"
            answer = ""
            async for raw in stream.content:
                line = raw.decode().strip()
                if line.startswith("data:") and '"id":1' in line.replace(" ", ""):
                    answer = line
                    break
            assert '"result"' in answer
    out = capsys.readouterr().out
    assert out.count("session_subject_mismatch") == 1
    assert mallory_token not in out
    assert alice_token not in out
