"""`HttpEndpoints` through the HTTP front end over an in-process upstream (the fake at the seam):
what goes upstream is the parsed message, the answer and its session come back, a session serves
only the subject that opened it, sessions stay with the server that opened them, a RunConfig
reload announces nothing on streams that are the server's own but rechecks subscriptions, and a
session told its subscription ended while no GET stream was open is told when one opens, with
the server's own events after it unchanged."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from testkit.mcprequests import INITIALIZE, POST_HEADERS
from testkit.subjects import subject_header

from moorage_proxyrunner.backends.reverse.endpoints import HttpEndpoints
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.front.app import make_app
from moorage_proxyrunner.front.metrics import ProxyMetrics
from moorage_proxyrunner.protocol.pipeline import Pipeline


@dataclass
class Upstream:
    """A streamable HTTP MCP server that answers everything at once and names itself."""

    name: str
    posted: list[tuple[dict[str, Any], str | None]] = field(default_factory=list)
    sessions: itertools.count[int] = field(default_factory=itertools.count)
    events: bytes = b""
    """What its GET stream sends before it ends."""

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(self.events)
        await response.write_eof()
        return response

    async def mcp(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.posted.append((body, request.headers.get("Mcp-Session-Id")))
        headers = {}
        if body.get("method") == "initialize":
            headers["Mcp-Session-Id"] = f"{self.name}-{next(self.sessions)}"
        result = {"server": self.name}
        return web.json_response(
            {"jsonrpc": "2.0", "id": body["id"], "result": result}, headers=headers
        )


@contextlib.asynccontextmanager
async def proxied(
    *upstreams: Upstream,
) -> AsyncIterator[tuple[TestClient[Any, Any], HttpEndpoints]]:
    async with contextlib.AsyncExitStack() as stack:
        urls = []
        for upstream in upstreams:
            app = web.Application()
            app.router.add_post("/mcp", upstream.mcp)
            app.router.add_get("/mcp", upstream.stream)
            server = await stack.enter_async_context(TestServer(app))
            urls.append(str(server.make_url("/mcp")))
        registry = CollectorRegistry()
        settings = ProxyRunnerSettings(port=0)
        endpoints = HttpEndpoints(
            urls,
            transport="streamable-http",
            settings=settings,
            pipeline=Pipeline(),
            metrics=ProxyMetrics(registry),
        )
        proxy = make_app(settings, endpoints=endpoints, registry=registry)
        proxy.middlewares.append(subject_header)
        client = await stack.enter_async_context(TestClient(TestServer(proxy)))
        yield client, endpoints


def headers(session: str | None = None, subject: str | None = None) -> dict[str, str]:
    extra = {"Mcp-Session-Id": session} if session else {}
    return {**POST_HEADERS, **extra, **({"X-Subject": subject} if subject else {})}


async def test_the_parsed_call_goes_upstream_and_its_answer_comes_back() -> None:
    upstream = Upstream("a")
    async with proxied(upstream) as (client, endpoints):
        assert endpoints.is_ready()
        opened = await client.post("/mcp", json=INITIALIZE, headers=headers())
        assert opened.status == 200
        session = opened.headers["Mcp-Session-Id"]
        assert session == "a-0"
        call = {"jsonrpc": "2.0", "id": "x", "method": "tools/list", "params": {}}
        resp = await client.post("/mcp", json=call, headers=headers(session))
        assert resp.status == 200
        assert await resp.json() == {"jsonrpc": "2.0", "id": "x", "result": {"server": "a"}}
        assert upstream.posted[-1] == (call, "a-0")


async def test_a_session_stays_with_the_server_that_opened_it() -> None:
    first, second = Upstream("a"), Upstream("b")
    async with proxied(first, second) as (client, _):
        sessions = []
        for _ in range(2):
            opened = await client.post("/mcp", json=INITIALIZE, headers=headers())
            sessions.append(opened.headers["Mcp-Session-Id"])
        assert sorted(sessions) == ["a-0", "b-0"]
        for session in sessions:
            call = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
            resp = await client.post("/mcp", json=call, headers=headers(session))
            assert (await resp.json())["result"]["server"] == session[0]


async def test_another_subject_is_answered_as_for_an_unknown_session() -> None:
    upstream = Upstream("a")
    async with proxied(upstream) as (client, _):
        opened = await client.post("/mcp", json=INITIALIZE, headers=headers(subject="alice"))
        session = opened.headers["Mcp-Session-Id"]
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
        foreign = await client.post("/mcp", json=call, headers=headers(session, "bob"))
        unknown = await client.post("/mcp", json=call, headers=headers("never-opened", "bob"))
        assert foreign.status == unknown.status == 404
        assert await foreign.json() == await unknown.json()
        assert [body["method"] for body, _ in upstream.posted] == ["initialize"]


async def test_a_reload_announces_nothing_on_the_servers_streams_but_rechecks_subscriptions() -> (
    None
):
    async with proxied(Upstream("a")) as (_, endpoints):
        assert endpoints.announcer() is None
        assert endpoints.rechecker() is not None


async def test_a_notice_for_a_session_without_a_get_stream_goes_out_when_one_opens() -> None:
    server_event = (
        b'id: ev-1\nevent: message\ndata: {"jsonrpc":"2.0","id":7,'
        b'"method":"sampling/createMessage","params":{}}\n\n'
    )
    upstream = Upstream("a", events=server_event)
    async with proxied(upstream) as (client, endpoints):
        opened = await client.post("/mcp", json=INITIALIZE, headers=headers())
        session = opened.headers["Mcp-Session-Id"]
        subscribe = {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "resources/subscribe",
            "params": {"uri": "test://gone"},
        }
        await client.post("/mcp", json=subscribe, headers=headers(session))
        assert endpoints.recheck_subscriptions(lambda identity, uri: False) == 1
        for _ in range(100):
            if upstream.posted[-1][0]["method"] == "resources/unsubscribe":
                break
            await asyncio.sleep(0.01)
        assert upstream.posted[-1][0]["params"] == {"uri": "test://gone"}
        stream = await client.get(
            "/mcp", headers={"Accept": "text/event-stream", "Mcp-Session-Id": session}
        )
        body = await stream.read()
    notice, rest = body.split(b"\n\n", 1)
    assert b"subscription to test://gone has ended" in notice
    assert rest == server_event
