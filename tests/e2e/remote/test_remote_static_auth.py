"""A remote behind the proxy with a fixed credential (bearerToken, headerInjection), and a
remote at a private address refused when allowPrivateEndpoint is off."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from e2e.middleware.middlewarekit import bearer_client, bearer_sse_client
from e2e.proxy.proxykit import initialize_request, running_proxy
from remotekit import remote_upstream, runconfig_file

from moorage_api.outgoing import is_private_address
from moorage_proxyrunner.startup.local import LocalBackend, LocalConfig

pytestmark = pytest.mark.e2e

MODES = ["legacy", "2026-07-28"]
UPSTREAM_TOKEN = "remote-static-token"
ISSUER = "http://127.0.0.1:9"  # the static verifier never asks it


def backend(config: LocalConfig) -> LocalBackend:
    remote = config.runconfig.remote
    assert remote is not None
    return LocalBackend(transport=remote.transport, target_urls=(remote.url,))


def remote_config(
    tmp_path: Path, url: str, outgoing_auth: dict[str, Any], transport: str = "streamable-http"
) -> LocalConfig:
    return runconfig_file(
        tmp_path,
        remote={
            "url": url,
            "transport": transport,
            "allow_private_endpoint": True,
            "headers": [{"name": "X-Tenant", "value": "blue"}],
        },
        outgoing_auth=outgoing_auth,
    )


@pytest.mark.parametrize("mode", MODES)
async def test_bearer_token_reaches_the_remote_in_place_of_the_callers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setenv("REMOTE_TOKEN", UPSTREAM_TOKEN)
    async with remote_upstream(tmp_path, ISSUER, "--static", UPSTREAM_TOKEN) as upstream:
        auth = {"type": "bearerToken", "config_name": "b", "bearer_token": {"env": "REMOTE_TOKEN"}}
        config = remote_config(tmp_path, upstream.url, auth)
        async with (
            running_proxy(backend(config), config=config) as proxy,
            bearer_client(proxy.mcp, "a-caller-credential", mode=mode) as client,
        ):
            echoed = await client.call_tool("echo", {"text": "hi"})
            assert echoed.content[0].text == "hi"
    seen = {authorization for authorization, _ in upstream.received()}
    assert seen == {f"Bearer {UPSTREAM_TOKEN}"}


async def test_a_legacy_sse_remote_gets_the_token_on_its_stream_and_its_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMOTE_TOKEN", UPSTREAM_TOKEN)
    options = ("--static", UPSTREAM_TOKEN, "--transport", "sse")
    async with remote_upstream(tmp_path, ISSUER, *options) as upstream:
        auth = {"type": "bearerToken", "config_name": "b", "bearer_token": {"env": "REMOTE_TOKEN"}}
        config = remote_config(tmp_path, upstream.url, auth, transport="sse")
        async with (
            running_proxy(backend(config), config=config) as proxy,
            bearer_sse_client(proxy.sse, "a-caller-credential") as client,
        ):
            assert (await client.call_tool("echo", {"text": "hi"})).content[0].text == "hi"
    seen = [authorization for authorization, _ in upstream.received()]
    assert len(seen) >= 3  # the stream, and a POST per message
    assert set(seen) == {f"Bearer {UPSTREAM_TOKEN}"}


async def test_header_injection_sends_the_secret_in_its_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMOTE_KEY", UPSTREAM_TOKEN)
    options = ("--static", UPSTREAM_TOKEN, "--header", "X-Api-Key")
    async with remote_upstream(tmp_path, ISSUER, *options) as upstream:
        auth = {
            "type": "headerInjection",
            "config_name": "h",
            "header_injection": {"name": "X-Api-Key", "value_from": {"env": "REMOTE_KEY"}},
        }
        config = remote_config(tmp_path, upstream.url, auth)
        async with (
            running_proxy(backend(config), config=config) as proxy,
            bearer_client(proxy.mcp, "a-caller-credential") as client,
        ):
            assert (await client.call_tool("echo", {"text": "hi"})).content[0].text == "hi"
    received = upstream.received()
    assert received
    assert {pair for pair in received} == {("-", UPSTREAM_TOKEN)}


def private_host_name() -> str:
    """A host name (not an address, not `localhost`) that resolves only to private addresses:
    this machine's own name, as it usually does in a container or VM."""
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, None)}
    except OSError:
        pytest.skip(f"this machine's name {name!r} does not resolve")
    if not addresses or not all(is_private_address(str(a)) for a in addresses):
        pytest.skip(f"this machine's name {name!r} resolves to a public address")
    return name


async def test_a_name_resolving_to_a_private_address_is_refused_with_a_clear_error(
    tmp_path: Path,
) -> None:
    name = private_host_name()
    options = ("--static", UPSTREAM_TOKEN, "--host", "0.0.0.0")
    async with remote_upstream(tmp_path, ISSUER, *options) as upstream:
        port = upstream.url.rsplit(":", 1)[1].split("/")[0]
        # The URL passes the RunConfig's check (a name); the address is refused on connection.
        config = runconfig_file(tmp_path, remote={"url": f"http://{name}:{port}/mcp"})
        async with running_proxy(backend(config), config=config) as proxy:
            request = initialize_request()
            headers = {"Accept": "application/json, text/event-stream"}
            async with (
                aiohttp.ClientSession() as http,
                http.post(proxy.mcp, json=request, headers=headers) as resp,
            ):
                assert resp.status == 502
                answer = await resp.json()
            assert "private or loopback" in answer["error"]["message"]
            assert name in answer["error"]["message"]
    assert upstream.received() == []
