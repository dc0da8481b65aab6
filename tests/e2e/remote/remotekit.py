"""Helpers for the remote-proxy end-to-end tests: a real authorization server (`idpyoidc`, see
tests/fixtures/tokenexchange/authserver.py), the SDK's MCP server requiring a bearer token
(`remote_upstream.py`), a caller's token got the OAuth way, and a RunConfig file for the proxy.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from testkit.waiting import eventually

from moorage_dev.ports import free_port, is_port_open
from moorage_proxyrunner.policy.reload import load_local_runconfig
from moorage_proxyrunner.startup.local import LocalConfig

REPO = Path(__file__).resolve().parents[3]
AUTHSERVER = REPO / "tests" / "fixtures" / "tokenexchange" / "authserver.py"
UPSTREAM = Path(__file__).resolve().parent / "remote_upstream.py"

CALLER_CLIENT = "mcp-client"
CALLER_SECRET = "caller-secret"
PROXY_CLIENT = "moorage-proxy"
PROXY_SECRET = "proxy-secret"
PROXY_AUDIENCE = "moorage-proxy"
UPSTREAM_AUDIENCE = "https://remote.example/mcp"
REDIRECT = "http://127.0.0.1/callback"


@dataclass
class AuthServer:
    base: str
    exchanges: list[str] = field(default_factory=list)
    """The status of each token-exchange request the server answered, in order."""

    @property
    def token_url(self) -> str:
        return f"{self.base}/token"

    @property
    def jwks_url(self) -> str:
        return f"{self.base}/jwks.json"

    async def caller_token(self) -> str:
        """An access token for the test user, through the authorization-code grant."""
        async with aiohttp.ClientSession() as http:
            query = {
                "response_type": "code",
                "client_id": CALLER_CLIENT,
                "redirect_uri": REDIRECT,
                "scope": "openid mcp",
                "state": "s",
            }
            async with http.get(
                f"{self.base}/authorization", params=query, allow_redirects=False
            ) as resp:
                assert resp.status == 302, await resp.text()
                code = dict(parse_qsl(urlsplit(resp.headers["Location"]).query))["code"]
            form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
            basic = aiohttp.encode_basic_auth(CALLER_CLIENT, CALLER_SECRET)
            async with http.post(
                self.token_url, data=form, headers={"Authorization": basic}
            ) as resp:
                answer = await resp.json()
                assert resp.status == 200, answer
                token: str = answer["access_token"]
                return token


def authserver_config() -> dict[str, Any]:
    """The authorization server's clients: the caller's (tokens for the proxy) and the proxy's
    (allowed to exchange them for the remote's audience)."""
    return {
        "user": "alice",
        "lifetime": 300,
        "clients": {
            CALLER_CLIENT: {
                "secret": CALLER_SECRET,
                "scopes": ["openid", "mcp"],
                "audience": PROXY_AUDIENCE,
                "redirect_uri": REDIRECT,
            },
            PROXY_CLIENT: {
                "secret": PROXY_SECRET,
                "scopes": ["openid", "mcp"],
                "audience": UPSTREAM_AUDIENCE,
                "exchange": True,
            },
        },
    }


@contextlib.asynccontextmanager
async def authorization_server(tmp_path: Path) -> AsyncIterator[AuthServer]:
    path = tmp_path / "authserver.json"
    path.write_text(json.dumps(authserver_config()))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(AUTHSERVER),
        "--port",
        "0",
        "--config",
        str(path),
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(60):
            line = (await process.stdout.readline()).decode()
        assert line.startswith("LISTENING "), line
        server = AuthServer(f"http://127.0.0.1:{int(line.split()[1])}")

        async def follow() -> None:
            assert process.stdout is not None
            async for raw in process.stdout:
                text = raw.decode().strip()
                if text.startswith("EXCHANGE "):
                    server.exchanges.append(text.split()[1])

        reader = asyncio.create_task(follow())
        yield server
        reader.cancel()
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


@dataclass
class Upstream:
    url: str
    record: Path

    def received(self) -> list[tuple[str, str]]:
        """(Authorization, injected header) of each request the server received."""
        if not self.record.exists():
            return []
        pairs = []
        for line in self.record.read_text().splitlines():
            authorization, _, injected = line.rpartition(" ")
            pairs.append((authorization, injected))
        return pairs


@contextlib.asynccontextmanager
async def remote_upstream(tmp_path: Path, issuer: str, *options: str) -> AsyncIterator[Upstream]:
    port = free_port()
    record = tmp_path / f"upstream-{port}.log"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(UPSTREAM),
        "--port",
        str(port),
        "--issuer",
        issuer,
        "--record",
        str(record),
        *options,
    )
    try:
        await eventually(
            lambda: asyncio.to_thread(is_port_open, port), message="remote server listening"
        )
        path = "/sse" if "sse" in options else "/mcp"
        yield Upstream(f"http://127.0.0.1:{port}{path}", record)
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


def runconfig_file(tmp_path: Path, **fields: Any) -> LocalConfig:
    data = {"schema_version": "moorage/v1", **fields}
    path = tmp_path / "runconfig.json"
    path.write_text(json.dumps(data))
    return LocalConfig(path=path, runconfig=load_local_runconfig(path.read_text()))


def claims_of(token: str) -> dict[str, Any]:
    """A JWT's claims, unverified."""
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


async def policy_applies(client: Client) -> None:
    """Cedar denies `secret`; the tool filter answers `hidden` as a tool that does not exist."""
    with pytest.raises(MCPError) as denied:
        await client.call_tool("secret", {})
    assert denied.value.error.code == -32003
    # The filtered tool is answered as a tool that does not exist.
    with pytest.raises(MCPError) as unknown:
        await client.call_tool("no_such_tool", {})
    with pytest.raises(MCPError) as hidden:
        await client.call_tool("hidden", {})
    assert hidden.value.error.code == unknown.value.error.code


def only_exchanged_tokens_reached(upstream: Upstream, caller: str) -> None:
    """The remote received requests, each with a token exchanged for it, never the caller's."""
    received = upstream.received()
    assert received, "the remote received nothing"
    # The proxy's own initialize check has no caller, so it carries no token ("-").
    tokens = {authorization for authorization, _ in received} - {"-"}
    assert f"Bearer {caller}" not in tokens
    assert tokens, received
    assert all(value.startswith("Bearer ") for value in tokens), tokens
    for value in tokens:
        claims = claims_of(value.removeprefix("Bearer "))
        assert claims["aud"] == [UPSTREAM_AUDIENCE]
        assert claims["sub"] == "alice"
