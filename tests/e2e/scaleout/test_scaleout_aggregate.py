"""The aggregator (VirtualMCPServer in local mode) as three replicas behind HAProxy sharing
Redis: one SDK client session is served across the replicas, its calls (an elicitation among
them) answered as by one aggregator."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from e2e.proxy.proxykit import serving_toolbox
from e2e.scaleout.scaleoutkit import greet, scaled_out, spread, text_of
from mcp import Client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_one_client_session_of_the_aggregator_is_served_by_every_replica(
    tmp_path: Path, mode: str
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        box_url = await stack.enter_async_context(serving_toolbox("http"))
        aggregate = {
            "backends": [{"name": "box", "url": box_url}],
            "conflict_resolution": {"strategy": "prefix"},
            "health_check_interval_seconds": 1,
            "backend_timeout_seconds": 20,
        }
        cluster = await stack.enter_async_context(
            scaled_out(tmp_path, (), name="hub", namespace="local", aggregate=aggregate)
        )
        before = await cluster.served()
        async with Client(cluster.mcp, mode=mode, elicitation_callback=greet) as client:
            for round_ in range(4):
                tools = {tool.name for tool in (await client.list_tools()).tools}
                assert {"box_echo", "box_ask_name"} <= tools
                text = f"round {round_}"
                assert text_of(await client.call_tool("box_echo", {"text": text})) == text
            assert text_of(await client.call_tool("box_ask_name", {})) == "Hello, Ada!"
        served = spread(before, await cluster.served())
        assert all(count > 0 for count in served), served
        cluster.assert_alive()
