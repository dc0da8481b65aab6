"""Sessions survive requests landing on any replica: a real `mcp` SDK client of each era, and
a legacy HTTP+SSE one, through HAProxy round-robin in front of three replicas sharing Redis;
in front of a stdio server (the toolbox: its elicitation, in 2026-07-28 an `input_required`
answer and the SDK's retry) and of HTTP servers (streamable HTTP and legacy SSE). Each replica
serves some of every client's requests."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from e2e.proxy.proxykit import serving_toolbox
from e2e.scaleout.scaleoutkit import (
    STDIO_TOOLBOX,
    ScaledOut,
    greet,
    http_backend,
    scaled_out,
    spread,
    text_of,
)
from mcp import Client
from mcp.client.sse import sse_client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

MODERN = "2026-07-28"


async def session_story(client: Client, *, elicits: bool = True) -> None:
    """Listings and calls, each on whichever replica HAProxy picks; the answers are this
    client's own. Bounded: a lost session must fail the test, not hang it."""
    async with asyncio.timeout(90):
        await _story(client, elicits=elicits)


async def _story(client: Client, *, elicits: bool) -> None:
    for round_ in range(4):
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert {"echo", "ask_name", "count"} <= tools
        text = f"round {round_}"
        assert text_of(await client.call_tool("echo", {"text": text})) == text
    if elicits:
        assert text_of(await client.call_tool("ask_name", {})) == "Hello, Ada!"
        assert text_of(await client.call_tool("echo", {"text": "after"})) == "after"


async def assert_spread(cluster: ScaledOut, before: list[float]) -> None:
    served = spread(before, await cluster.served())
    assert all(count > 0 for count in served), served


@pytest.mark.parametrize("mode", ["legacy", MODERN])
async def test_a_streamable_http_client_of_either_era_is_served_by_every_replica(
    tmp_path: Path, mode: str
) -> None:
    async with scaled_out(tmp_path, STDIO_TOOLBOX) as cluster:
        before = await cluster.served()
        async with Client(cluster.mcp, mode=mode, elicitation_callback=greet) as client:
            await session_story(client)
        await assert_spread(cluster, before)
        cluster.assert_alive()


async def test_the_input_required_retry_of_a_modern_client_may_land_on_another_replica(
    tmp_path: Path,
) -> None:
    async with scaled_out(tmp_path, STDIO_TOOLBOX) as cluster:
        async with Client(cluster.mcp, mode=MODERN, elicitation_callback=greet) as client:
            # Three replicas, round-robin: over three calls the retry lands on every replica.
            for _ in range(3):
                before = await cluster.served()
                assert text_of(await client.call_tool("ask_name", {})) == "Hello, Ada!"
                calls = spread(before, await cluster.served())
                # The first answer is `input_required`, the SDK retries with the answer: two
                # requests, on two different replicas.
                assert sorted(calls) == [0, 1, 1], calls
        cluster.assert_alive()


async def test_a_legacy_sse_client_of_a_stdio_server_is_served_by_every_replica(
    tmp_path: Path,
) -> None:
    async with scaled_out(tmp_path, STDIO_TOOLBOX) as cluster:
        before = await cluster.served()
        async with Client(sse_client(cluster.sse), mode="legacy", elicitation_callback=greet) as c:
            await session_story(c)
        await assert_spread(cluster, before)
        cluster.assert_alive()


@pytest.mark.parametrize(
    ("upstream", "client_path"),
    [("http", "/mcp"), ("sse", "/sse")],
    ids=["streamable-http", "legacy-sse"],
)
async def test_a_client_of_an_http_server_is_served_by_every_replica(
    tmp_path: Path, upstream: str, client_path: str
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(serving_toolbox(upstream))
        transport = "sse" if upstream == "sse" else "streamable-http"
        cluster = await stack.enter_async_context(
            scaled_out(tmp_path, http_backend(transport, url))
        )
        before = await cluster.served()
        target = cluster.mcp if client_path == "/mcp" else sse_client(cluster.sse)
        async with Client(target, mode="legacy", elicitation_callback=greet) as client:
            await session_story(client)
        await assert_spread(cluster, before)
        cluster.assert_alive()
