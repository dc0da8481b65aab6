"""The era probe (`--stdio-era auto`) against real servers: a legacy-only server that refuses
`server/discover` is initialised and serves as before; a dual-era one runs in 2026-07-28 and
clients of both eras are served."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client
from proxykit import TIME_SERVER, node_binary, node_tools, running_proxy, stdio_backend

pytestmark = [pytest.mark.e2e]

MODERN = "2026-07-28"


def everything() -> tuple[str, ...]:
    root = node_tools()
    server = root / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist"
    return (node_binary(root), str(Path(server) / "index.js"), "stdio")


async def test_a_legacy_only_server_stays_usable_after_refusing_the_probe() -> None:
    async with running_proxy(stdio_backend(everything()), stdio_era="auto") as proxy:
        for mode in ("legacy", MODERN):
            async with Client(proxy.mcp, mode=mode) as client:
                result = await client.call_tool("echo", {"message": "hi"})
            assert "hi" in result.content[0].text, mode  # type: ignore[union-attr]


async def test_a_dual_era_server_serves_clients_of_both_eras() -> None:
    async with running_proxy(stdio_backend(TIME_SERVER), stdio_era="auto") as proxy:
        for mode in ("legacy", MODERN):
            async with Client(proxy.mcp, mode=mode) as client:
                tools = await client.list_tools()
                result = await client.call_tool("get_current_time", {"timezone": "UTC"})
            assert "get_current_time" in {tool.name for tool in tools.tools}, mode
            assert not result.is_error, mode
