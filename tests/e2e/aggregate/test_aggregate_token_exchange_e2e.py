"""An aggregated backend reached with RFC 8693 token exchange, end to end on loopback: each
client session's backend session carries its own caller's exchanged token.

A real authorization server (`idpyoidc`) issues the callers' tokens and exchanges them; the
backend is the `mcp` SDK's server requiring a token for its own audience (it records every
`Authorization` it receives); the aggregator requires OIDC for its own audience.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from e2e.aggregate.test_aggregate_e2e import text_of
from e2e.middleware.middlewarekit import bearer_client
from e2e.proxy.proxykit import running_proxy
from e2e.remote.remotekit import (
    PROXY_AUDIENCE,
    PROXY_CLIENT,
    PROXY_SECRET,
    UPSTREAM_AUDIENCE,
    AuthServer,
    authorization_server,
    claims_of,
    remote_upstream,
    runconfig_file,
)

from moorage_proxyrunner.startup.local import LocalBackend

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

SECRET_ENV = "MOORAGE_TEST_AGGREGATE_EXCHANGE_SECRET"


@contextlib.asynccontextmanager
async def exchanging_aggregator(
    tmp_path: Path, server: AuthServer, backend_url: str
) -> AsyncIterator[str]:
    config = runconfig_file(
        tmp_path,
        name="hub",
        namespace="local",
        oidc={
            "type": "oidc",
            "issuer": server.base,
            "audience": PROXY_AUDIENCE,
            "jwks_url": server.jwks_url,
        },
        aggregate={
            "backends": [
                {
                    "name": "remote",
                    "url": backend_url,
                    "outgoing_auth": {
                        "type": "tokenExchange",
                        "config_name": "exchange",
                        "token_exchange": {
                            "token_url": server.token_url,
                            "client_id": PROXY_CLIENT,
                            "client_secret": {"env": SECRET_ENV},
                            "audience": UPSTREAM_AUDIENCE,
                            "scopes": ["mcp"],
                        },
                    },
                }
            ],
            "conflict_resolution": {"strategy": "prefix"},
            "health_check_interval_seconds": 1,
            "backend_timeout_seconds": 20,
        },
    )
    async with running_proxy(
        LocalBackend(aggregate=True), config=config, oidc=config.runconfig.oidc
    ) as proxy:
        yield proxy.base


def exchanged_tokens(received: list[tuple[str, str]]) -> set[str]:
    # The aggregator's own health checks have no caller, so they carry no token ("-").
    return {authorization for authorization, _ in received} - {"-"}


async def test_each_client_sessions_backend_session_carries_its_callers_exchanged_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, PROXY_SECRET)
    async with authorization_server(tmp_path) as server:
        options = ("--jwks", server.jwks_url, "--audience", UPSTREAM_AUDIENCE)
        async with remote_upstream(tmp_path, server.base, *options) as upstream:
            callers = [await server.caller_token() for _ in range(2)]
            async with exchanging_aggregator(tmp_path, server, upstream.url) as base:
                clients: list[Any] = []
                async with contextlib.AsyncExitStack() as stack:
                    for token in callers:
                        clients.append(
                            await stack.enter_async_context(
                                bearer_client(f"{base}/mcp", token, mode="legacy")
                            )
                        )
                    first, second = clients
                    assert "remote_echo" in {t.name for t in (await first.list_tools()).tools}
                    assert text_of(await first.call_tool("remote_echo", {"text": "a"})) == "a"
                    after_first = exchanged_tokens(upstream.received())
                    assert len(after_first) == 1
                    assert text_of(await second.call_tool("remote_echo", {"text": "b"})) == "b"
                    after_second = exchanged_tokens(upstream.received())
                    assert len(after_second) == 2, "the second caller has its own token"
                    assert text_of(await first.call_tool("remote_echo", {"text": "c"})) == "c"
                    assert exchanged_tokens(upstream.received()) == after_second
                # One exchange per caller, the rest from the cache.
                assert server.exchanges == ["200", "200"]
                # A modern-era request has no session: it gets a backend session of its own.
                modern = await server.caller_token()
                callers.append(modern)
                async with bearer_client(f"{base}/mcp", modern, mode="2026-07-28") as third:
                    assert text_of(await third.call_tool("remote_echo", {"text": "d"})) == "d"
                assert len(exchanged_tokens(upstream.received())) == 3
                assert server.exchanges == ["200", "200", "200"]
    tokens = exchanged_tokens(upstream.received())
    assert not {f"Bearer {caller}" for caller in callers} & tokens
    for value in tokens:
        claims = claims_of(value.removeprefix("Bearer "))
        assert claims["aud"] == [UPSTREAM_AUDIENCE]
        assert claims["sub"] == "alice"
