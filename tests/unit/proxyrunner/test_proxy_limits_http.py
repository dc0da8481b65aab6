"""The proxy's limits on its HTTP backends, against an upstream that never answers: the client
gets the timeout error and the upstream sees its request closed (streamable HTTP) or cancelled
(HTTP+SSE); sessions past the caps are refused."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from testkit.waiting import eventually

from moorage_proxyrunner.backends.reverse.endpoints import HttpEndpoints
from moorage_proxyrunner.config.limits import REQUEST_TIMED_OUT, Limits
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.front.app import make_app
from moorage_proxyrunner.front.metrics import ProxyMetrics
from moorage_proxyrunner.protocol.pipeline import Pipeline

JSON = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
CALL = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "echo"}}


@dataclass
class Upstream:
    """An MCP server that opens sessions but never answers a tool call."""

    streaming: bool = False
    """Answer a tool call with an SSE stream carrying one progress event, then nothing."""
    answering: bool = False
    """On HTTP+SSE, do answer each posted request on the stream."""
    events: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    posted: list[dict[str, Any]] = field(default_factory=list)
    sessions: itertools.count[int] = field(default_factory=itertools.count)

    async def mcp(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.posted.append(body)
        if body.get("method") == "initialize":
            result = {"protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": {}}
            return web.json_response(
                {"jsonrpc": "2.0", "id": body["id"], "result": result},
                headers={"Mcp-Session-Id": f"s{next(self.sessions)}"},
            )
        if self.streaming:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            progress = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {}}
            await response.write(f"event: message\ndata: {json.dumps(progress)}\n\n".encode())
        await self.hold(request)
        return web.Response(status=204)

    async def sse(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"event: endpoint\ndata: /messages?session_id=up\n\n")
        try:
            while True:
                await response.write(await self.events.get())
        finally:
            self.closed.set()

    async def messages(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.posted.append(body)
        if self.answering and "id" in body:
            answer = {"jsonrpc": "2.0", "id": body["id"], "result": {"n": 1}}
            self.events.put_nowait(f"event: message\ndata: {json.dumps(answer)}\n\n".encode())
        return web.Response(status=202)

    async def hold(self, request: web.Request) -> None:
        """Wait until the proxy closes the connection (aiohttp then cancels this handler)."""
        try:
            await asyncio.Event().wait()
        finally:
            self.closed.set()


@contextlib.asynccontextmanager
async def proxied(
    upstream: Upstream, transport: str, **limits: Any
) -> AsyncIterator[tuple[TestClient[Any, Any], HttpEndpoints]]:
    app = web.Application()
    app.router.add_post("/mcp", upstream.mcp)
    app.router.add_get("/sse", upstream.sse)
    app.router.add_post("/messages", upstream.messages)
    async with TestServer(app) as server:
        path = "/sse" if transport == "sse" else "/mcp"
        registry = CollectorRegistry()
        settings = ProxyRunnerSettings(port=0, limits=Limits(**limits))
        endpoints = HttpEndpoints(
            [str(server.make_url(path))],
            transport=transport,
            settings=settings,
            pipeline=Pipeline(),
            metrics=ProxyMetrics(registry),
        )
        proxy = make_app(settings, endpoints=endpoints, registry=registry)
        async with TestClient(TestServer(proxy)) as client:
            yield client, endpoints


async def post_and_read(client: TestClient[Any, Any], stream: ClientResponse) -> bytes:
    """Post `CALL` to the HTTP+SSE session of `stream`; the next event on the stream."""
    first = await stream.content.readuntil(b"\n\n")
    endpoint = first.decode().split("data: ")[1].strip()
    assert (await client.post(endpoint, json=CALL, headers=JSON)).status == 202
    return await asyncio.wait_for(stream.content.readuntil(b"\n\n"), timeout=10)


@pytest.mark.parametrize("streaming", [False, True], ids=["json", "sse"])
async def test_an_unanswered_request_times_out_and_its_upstream_request_is_closed(
    streaming: bool,
) -> None:
    upstream = Upstream(streaming=streaming)
    async with proxied(upstream, "streamable-http", request_timeout=0.3) as (client, _):
        resp = await client.post("/mcp", json=CALL, headers=JSON)
        text = await resp.text()
        answer = json.loads(text.rsplit("data: ", 1)[-1]) if streaming else json.loads(text)
        assert answer["id"] == 3
        assert answer["error"]["code"] == REQUEST_TIMED_OUT
        await asyncio.wait_for(upstream.closed.wait(), timeout=10)


async def test_an_unanswered_sse_request_times_out_on_the_stream_and_is_cancelled_upstream() -> (
    None
):
    upstream = Upstream()
    async with proxied(upstream, "sse", request_timeout=0.3) as (client, _):
        stream = await client.get("/sse", headers={"Accept": "text/event-stream"})
        event = await post_and_read(client, stream)
        answer = json.loads(event.decode().split("data: ")[1])
        assert answer["error"]["code"] == REQUEST_TIMED_OUT
        assert upstream.posted[-1] == {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": 3, "reason": "the request timed out"},
        }
        stream.close()


async def test_sessions_past_the_cap_are_refused_before_reaching_the_upstream() -> None:
    upstream = Upstream()
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    async with proxied(upstream, "streamable-http", max_sessions=1) as (client, _):
        assert (await client.post("/mcp", json=initialize, headers=JSON)).status == 200
        refused = await client.post("/mcp", json=initialize, headers=JSON)
        assert refused.status == 503
        assert "sessions open" in (await refused.json())["error"]["message"]
        assert sum(body.get("method") == "initialize" for body in upstream.posted) == 1


async def test_an_answered_sse_request_passes_through_untouched_and_its_deadline_ends() -> None:
    upstream = Upstream(answering=True)
    async with proxied(upstream, "sse", request_timeout=30) as (client, endpoints):
        stream = await client.get("/sse", headers={"Accept": "text/event-stream"})
        event = await post_and_read(client, stream)
        assert json.loads(event.decode().split("data: ")[1]) == {
            "jsonrpc": "2.0",
            "id": 3,
            "result": {"n": 1},
        }
        (session,) = endpoints._sse.values()
        assert not session.awaited
        assert not session.passing
        # No deadline is left to send a timeout error later.
        await eventually(lambda: not endpoints._drains, message="deadline task ended")
        stream.close()


async def test_an_sse_request_is_owed_until_its_answer_passes_the_relay_or_times_out() -> None:
    upstream = Upstream()
    async with proxied(upstream, "sse", request_timeout=0.5) as (client, endpoints):
        stream = await client.get("/sse", headers={"Accept": "text/event-stream"})
        first = await stream.content.readuntil(b"\n\n")
        endpoint = first.decode().split("data: ")[1].strip()
        assert endpoints.unanswered() == 0
        assert (await client.post(endpoint, json=CALL, headers=JSON)).status == 202
        assert endpoints.unanswered() == 1
        answer = {"jsonrpc": "2.0", "id": 3, "result": {"n": 1}}
        upstream.events.put_nowait(f"event: message\ndata: {json.dumps(answer)}\n\n".encode())
        event = await asyncio.wait_for(stream.content.readuntil(b"\n\n"), timeout=10)
        assert json.loads(event.decode().split("data: ")[1]) == answer
        assert endpoints.unanswered() == 0

        assert (await client.post(endpoint, json=CALL, headers=JSON)).status == 202
        assert endpoints.unanswered() == 1
        event = await asyncio.wait_for(stream.content.readuntil(b"\n\n"), timeout=10)
        assert json.loads(event.decode().split("data: ")[1])["error"]["code"] == REQUEST_TIMED_OUT
        assert endpoints.unanswered() == 0
        stream.close()
