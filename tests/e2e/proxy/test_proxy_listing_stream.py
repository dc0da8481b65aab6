"""A filtered listing from an HTTP backend streams: what precedes the answer is not held back.

A scripted streamable-HTTP server answers `tools/list` with an SSE stream: a log message, then,
only once the test allows it, the answer. Through the proxy with a tool filter, the client reads
the log message while the server still holds the answer back, and then the answer, filtered,
under the server's event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from proxykit import JSON, initialize, next_sse_events, running_proxy

from moorage_proxyrunner.config.toolpolicy import ToolPolicy
from moorage_proxyrunner.protocol.sse import EventParser, format_event
from moorage_proxyrunner.startup.local import LocalBackend

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

TOOLS = [{"name": name, "inputSchema": {"type": "object"}} for name in ("shown", "hidden", "other")]


class Listing:
    """The scripted server: `release` lets the `tools/list` answer go."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def mcp(self, request: web.Request) -> web.StreamResponse:
        message = await request.json()
        if message.get("method") == "initialize":
            result = {
                "protocolVersion": "2025-11-25",
                "capabilities": {"tools": {}, "logging": {}},
                "serverInfo": {"name": "scripted", "version": "1"},
            }
            return web.json_response(
                {"jsonrpc": "2.0", "id": message["id"], "result": result},
                headers={"Mcp-Session-Id": "s1"},
            )
        if "id" not in message:
            return web.Response(status=202)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        note = {
            "jsonrpc": "2.0",
            "method": "notifications/message",
            "params": {"level": "info", "data": "listing"},
        }
        await response.write(format_event(json.dumps(note).encode(), event_id="e1"))
        await self.release.wait()
        answer = {"jsonrpc": "2.0", "id": message["id"], "result": {"tools": TOOLS}}
        await response.write(format_event(json.dumps(answer).encode(), event_id="e2"))
        await response.write_eof()
        return response


@contextlib.asynccontextmanager
async def scripted_server(listing: Listing) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/mcp", listing.mcp)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/mcp"))
    finally:
        await server.close()


async def next_event(resp: aiohttp.ClientResponse, parser: EventParser) -> tuple[Any, Any]:
    [event] = await next_sse_events(resp, parser)
    return event.id, json.loads(event.data)


async def test_a_filtered_listing_streams_what_comes_before_its_answer() -> None:
    listing = Listing()
    async with scripted_server(listing) as url:
        backend = LocalBackend(transport="streamable-http", target_urls=(url,))
        policy = ToolPolicy(allowed=frozenset({"shown", "other"}))
        async with (
            running_proxy(backend, tool_policy=policy) as proxy,
            aiohttp.ClientSession() as http,
        ):
            session = await initialize(http, proxy.mcp)
            headers = {**JSON, "Mcp-Session-Id": session}
            listed = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
            async with http.post(proxy.mcp, json=listed, headers=headers) as resp:
                assert resp.content_type == "text/event-stream"
                parser = EventParser()
                first = await next_event(resp, parser)
                assert first == (
                    "e1",
                    {
                        "jsonrpc": "2.0",
                        "method": "notifications/message",
                        "params": {"level": "info", "data": "listing"},
                    },
                )
                listing.release.set()
                event_id, answer = await next_event(resp, parser)
    assert event_id == "e2"
    assert [tool["name"] for tool in answer["result"]["tools"]] == ["shown", "other"]
