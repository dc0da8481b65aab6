"""Authentication end to end: a real local OIDC issuer (discovery + JWKS over HTTP), the proxy in
front of `mcp-server-time`, raw HTTP clients and a real SDK client with a bearer token."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from middlewarekit import Proxy, assembled_proxy, bearer_client, tool_names
from testkit.issuer import LocalIssuer, new_key, serving_issuer, unsigned_token

from moorage_api.runconfig import RunConfigOIDC
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.policy.jwks import HttpJwks, JwksCache

pytestmark = pytest.mark.e2e

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@contextlib.asynccontextmanager
async def proxy_for(issuer: LocalIssuer, **oidc: Any) -> AsyncIterator[Proxy]:
    """The proxy trusting `issuer`; its JWKS cache may refresh at once (no rate limit)."""
    fetcher = HttpJwks(issuer=issuer.url, jwks_url=oidc.pop("jwks_url", None))
    keys = JwksCache(fetcher, min_refresh_interval=0.0)
    settings = ProxyRunnerSettings(
        port=0,
        oidc=RunConfigOIDC(type="oidc", issuer=issuer.url, audience=issuer.audience, **oidc),
    )
    try:
        async with assembled_proxy(settings, keys=keys) as proxy:
            yield proxy
    finally:
        await fetcher.close()


async def post(
    proxy: Proxy, authorization: str | None, body: Any = INITIALIZE
) -> tuple[int, dict[str, str], Any]:
    headers = dict(HEADERS)
    if authorization is not None:
        headers["Authorization"] = authorization
    async with (
        aiohttp.ClientSession() as http,
        http.post(proxy.mcp, json=body, headers=headers) as resp,
    ):
        text = await resp.text()
        return resp.status, dict(resp.headers), json.loads(text) if text else None


async def test_a_valid_token_is_served_and_the_sdk_client_works() -> None:
    async with serving_issuer() as issuer, proxy_for(issuer) as proxy:
        status, headers, body = await post(proxy, f"Bearer {issuer.token()}")
        assert status == 200, body
        assert "Mcp-Session-Id" in headers
        async with bearer_client(proxy.mcp, issuer.token(), mode="legacy") as client:
            assert "get_current_time" in tool_names(await client.list_tools())
        assert issuer.discovery_requests == 1, "the JWKS URL was discovered once"


def challenge_params(value: str) -> dict[str, str]:
    assert value.startswith("Bearer ")
    return dict(re.findall(r'(\w+)="([^"]*)"', value))


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda i: None, None),
        (lambda i: "Basic YTpi", "invalid_token"),
        (lambda i: f"Bearer {i.token(exp=int(time.time()) - 600)}", "invalid_token"),
        (lambda i: f"Bearer {i.token(aud='other')}", "invalid_token"),
        (lambda i: f"Bearer {i.token(iss='http://127.0.0.1:1')}", "invalid_token"),
        (lambda i: f"Bearer {i.token(key=new_key(), kid=i.keys[0].kid)}", "invalid_token"),
        (lambda i: f"Bearer {unsigned_token(i.claims(), kid=i.keys[0].kid)}", "invalid_token"),
        (lambda i: f"Bearer {i.token(key=new_key())}", "invalid_token"),
        (lambda i: "Bearer not.a.jwt", "invalid_token"),
    ],
    ids=[
        "none",
        "basic",
        "expired",
        "audience",
        "issuer",
        "bad-signature",
        "alg-none",
        "unknown-kid",
        "garbage",
    ],
)
async def test_bad_or_missing_tokens_get_401_with_a_challenge(make: Any, error: str | None) -> None:
    async with serving_issuer() as issuer, proxy_for(issuer) as proxy:
        status, headers, body = await post(proxy, make(issuer))
        assert status == 401
        params = challenge_params(headers["WWW-Authenticate"])
        assert params.get("error") == error
        assert (
            params["resource_metadata"] == f"{proxy.base}/.well-known/oauth-protected-resource/mcp"
        )
        assert body["error"]["message"].startswith("Unauthorized")
        assert (
            proxy.metric("moorage_proxy_authn_failures_total", {"reason": "missing"})
            + proxy.metric("moorage_proxy_requests_total", {"method": "initialize", "status": "ok"})
            <= 1
        )


async def test_a_rotated_key_works_after_the_jwks_refresh() -> None:
    async with serving_issuer() as issuer, proxy_for(issuer) as proxy:
        old_key = issuer.keys[0]
        old_token = issuer.token()
        assert (await post(proxy, f"Bearer {old_token}"))[0] == 200
        fetched = issuer.jwks_requests
        unknown = new_key()
        assert (await post(proxy, f"Bearer {issuer.token(key=unknown)}"))[0] == 401
        assert issuer.jwks_requests == fetched + 1, "an unknown kid refreshes the JWKS"
        rotated = issuer.rotate(keep_old=False)
        assert (await post(proxy, f"Bearer {issuer.token(key=rotated)}"))[0] == 200
        # A token the proxy verified before stays remembered for a bounded time (at most 60 s);
        # a new token signed with the dropped key is refused at once.
        assert (await post(proxy, f"Bearer {old_token}"))[0] == 200
        fresh = issuer.token(key=old_key, jti="fresh")
        assert (await post(proxy, f"Bearer {fresh}"))[0] == 401, "the dropped key is gone"
        async with bearer_client(proxy.mcp, issuer.token(key=rotated), mode="2026-07-28") as client:
            assert "convert_time" in tool_names(await client.list_tools())


async def test_scopes_are_required_and_advertised() -> None:
    async with (
        serving_issuer() as issuer,
        proxy_for(issuer, required_scopes=["mcp:tools"], client_id="cli") as proxy,
    ):
        status, headers, _ = await post(proxy, f"Bearer {issuer.token(scope='openid')}")
        assert status == 403
        params = challenge_params(headers["WWW-Authenticate"])
        assert params["error"] == "insufficient_scope"
        assert params["scope"] == "mcp:tools"
        assert (await post(proxy, f"Bearer {issuer.token(scope='openid mcp:tools')}"))[0] == 200
        async with aiohttp.ClientSession() as http:
            for path, resource in (("", "/mcp"), ("/mcp", "/mcp"), ("/sse", "/sse")):
                url = f"{proxy.base}/.well-known/oauth-protected-resource{path}"
                async with http.get(url) as resp:
                    assert resp.status == 200
                    document = await resp.json()
                assert document == {
                    "resource": f"{proxy.base}{resource}",
                    "authorization_servers": [issuer.url],
                    "bearer_methods_supported": ["header"],
                    "scopes_supported": ["mcp:tools"],
                    "client_id": "cli",
                }
            async with http.get(f"{proxy.base}/.well-known/oauth-protected-resource/other") as resp:
                assert resp.status == 404


async def test_health_and_metrics_need_no_token_and_sse_does() -> None:
    async with (
        serving_issuer() as issuer,
        proxy_for(issuer, jwks_url=None) as proxy,
        aiohttp.ClientSession() as http,
    ):
        for path in ("/health", "/metrics"):
            async with http.get(f"{proxy.base}{path}") as resp:
                assert resp.status == 200
        async with http.get(f"{proxy.base}/sse") as resp:
            assert resp.status == 401
        async with http.post(f"{proxy.base}/messages?session_id=x", json={}) as resp:
            assert resp.status == 401
            assert challenge_params(resp.headers["WWW-Authenticate"])["resource_metadata"].endswith(
                "/sse"
            )


TOKENISH = st.builds(
    lambda parts: ".".join(parts),
    st.lists(
        st.text(
            alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=",
            max_size=40,
        ),
        min_size=1,
        max_size=4,
    ),
)
HEADER_VALUES = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300),
    TOKENISH.map(lambda t: f"Bearer {t}"),
    # DEL is a control character no HTTP client sends in a header; the rest of Latin-1 is legal.
    st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
        max_size=100,
    ).map(lambda t: f"bearer {t}"),
)


@pytest.fixture
async def shared_proxy() -> AsyncIterator[tuple[LocalIssuer, Proxy]]:
    async with serving_issuer() as issuer, proxy_for(issuer) as proxy:
        yield issuer, proxy


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=HEADER_VALUES)
async def test_no_authorization_header_value_causes_a_server_error(
    shared_proxy: tuple[LocalIssuer, Proxy], value: str
) -> None:
    _, proxy = shared_proxy
    status, headers, _ = await post(proxy, value)
    assert status in (200, 401, 403), status
    if status == 401:
        assert headers["WWW-Authenticate"].startswith("Bearer ")


async def test_an_oversized_body_is_refused_before_authentication(
    shared_proxy: tuple[LocalIssuer, Proxy],
) -> None:
    """Spec §4.4 order: body limit, then authentication; the body is never read."""
    _, proxy = shared_proxy
    padding = "x" * (9 * 1024 * 1024)
    status, headers, body = await post(proxy, None, {**INITIALIZE, "padding": padding})
    assert status == 413
    assert "WWW-Authenticate" not in headers
    assert "exceeds" in body["error"]["message"]
