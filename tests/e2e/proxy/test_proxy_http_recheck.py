"""Resource subscriptions held through an HTTP backend end when the policy stops allowing them.

The npm "everything" server runs on its own HTTP (streamable HTTP and legacy HTTP+SSE) behind the
proxy; it sends `notifications/resources/updated` for each URI subscribed on a session every
10 s, in the order they were subscribed, and asks for sampling (on the session's GET stream,
over streamable HTTP) when a resource is subscribed. A client subscribes to two resources; the
policy then forbids reading one. The client is told with a warning log message (on its
HTTP+SSE stream, or on the GET stream the proxy relays), the server is asked to unsubscribe
exactly that URI (its updates stop while the other's keep coming, and the server would send
the forbidden one's first if it still held it), the other still works, and the server's
sampling request on the stream the notice went to still reaches the client.

A 2026-07-28 `subscriptions/listen` stream relayed to the conformance fixture (over streamable
HTTP) ends with an error naming the URI, as on the stdio backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog
from mcp import Client, MCPError
from mcp.client.sse import sse_client
from proxykit import (
    CONFORMANCE_FIXTURE,
    _accepts_connections,
    node_binary,
    node_tools,
    running_proxy,
    serving_toolbox,
)
from test_proxy_everything import SUBSCRIBED, Observed, lose_listen_stream, write_policies
from testkit.waiting import eventually

from moorage_dev.ports import free_port
from moorage_proxyrunner.startup.local import LocalBackend

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

KEPT = "test://static/resource/2"
LATER = "test://static/resource/3"
TRANSPORTS = {"streamable-http": ("streamableHttp", "/mcp"), "sse": ("sse", "/sse")}


@contextlib.asynccontextmanager
async def serving_everything(transport: str) -> AsyncIterator[str]:
    """The "everything" server on HTTP; yields its MCP URL."""
    root = node_tools()
    server = root / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist"
    mode, path = TRANSPORTS[transport]
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        node_binary(root),
        str(server / "index.js"),
        mode,
        env={**os.environ, "PORT": str(port)},
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await eventually(
            lambda: _accepts_connections(port), message="the everything server listening"
        )
        yield f"http://127.0.0.1:{port}{path}"
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
async def test_a_subscription_the_policy_stops_allowing_ends_on_an_http_backend(
    transport: str, tmp_path: Path
) -> None:
    path = tmp_path / "runconfig.json"
    config = write_policies(path, "permit(principal, action, resource);")
    observed = Observed()
    async with (
        serving_everything(transport) as url,
        running_proxy(
            LocalBackend(transport=transport, target_urls=(url,)), config=config
        ) as proxy,
    ):
        target = sse_client(proxy.sse) if transport == "sse" else proxy.mcp
        with structlog.testing.capture_logs() as logs:
            async with observed.client(target) as client:
                if transport != "sse":
                    # The server asks its sampling question on the session's GET stream, which
                    # the SDK client opens just after `initialize`; one asked before it opens is
                    # lost and the subscription never answered.
                    await eventually(
                        lambda: any(e["event"] == "session_stream_opened" for e in logs),
                        message="the session's GET stream open through to the server",
                    )
                await _story(client, observed, path, transport)


async def _story(client: Client, observed: Observed, path: Path, transport: str) -> None:
    """Subscribe to two resources, forbid one: what the client is told and what still works."""
    await client.subscribe_resource(SUBSCRIBED)
    await client.subscribe_resource(KEPT)
    await eventually(
        lambda: SUBSCRIBED in observed.updated and KEPT in observed.updated,
        message="updates for both URIs",
        timeout=30,
    )
    write_policies(
        path,
        "permit(principal, action, resource);",
        f'forbid(principal, action == Action::"read_resource", resource == Resource::"{SUBSCRIBED}");',
    )
    await eventually(
        lambda: any(f"subscription to {SUBSCRIBED} has ended" in line for line in observed.logs),
        message="the client was told its subscription ended",
    )
    # The server sends the URIs in the order subscribed: once the kept one's update
    # arrives, the ended one's would have come first.
    observed.updated.clear()
    await eventually(
        lambda: KEPT in observed.updated, message="updates for the kept URI", timeout=30
    )
    assert SUBSCRIBED not in observed.updated
    assert (await client.read_resource(KEPT)).contents
    # The stream the notice went to still carries the server's own requests: subscribing
    # makes the server ask for sampling on it, and the subscription is answered only then.
    asked = len(observed.sampled)
    await client.subscribe_resource(LATER)
    assert any("subscription" in prompt for prompt in observed.sampled[asked:])
    sampled = await client.call_tool("sampleLLM", {"prompt": "say hi", "maxTokens": 20})
    assert "say hi" in observed.sampled[-1]
    assert f"sampled {len(observed.sampled[-1])} chars" in str(sampled.content)
    if transport == "sse":
        return  # a refused legacy POST is an HTTP 403, which ends the SDK's SSE client
    with pytest.raises(MCPError, match="Forbidden"):
        await client.read_resource(SUBSCRIBED)


async def test_a_listen_stream_the_policy_stops_allowing_ends_on_an_http_backend(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runconfig.json"
    config = write_policies(path, "permit(principal, action, resource);")
    watched = "test://watched-resource"
    async with (
        serving_toolbox("http", CONFORMANCE_FIXTURE) as url,
        running_proxy(
            LocalBackend(transport="streamable-http", target_urls=(url,)), config=config
        ) as proxy,
    ):
        ended = await lose_listen_stream(proxy.mcp, path, watched)
    assert f"no longer allows reading {watched}" in ended
