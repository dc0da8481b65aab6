"""Two `HttpEndpoints` replicas sharing one session store over an in-process upstream (the fake
at the seam), each served on its own loopback port so that one can forward to the other: a
session opened on one is served by the other from its record, refused to another subject, its
GET stream relayed by its owner; with the owner gone the other adopts it, subscriptions
included; with the store down a new session is refused with 503 and -32000 while a session
held locally goes on. A legacy HTTP+SSE session's POST on the other replica is forwarded to the
one holding its stream and answered there, never for another subject nor twice, and ends with
that replica."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from testkit.commands import free_port
from testkit.mcprequests import INITIALIZE
from testkit.subjects import subject_header
from unit.proxyrunner.test_proxy_http_endpoints import Upstream, headers

from moorage_proxyrunner.backends.reverse.endpoints import HttpEndpoints
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.front.app import make_app
from moorage_proxyrunner.front.metrics import ProxyMetrics
from moorage_proxyrunner.protocol.pipeline import Pipeline
from moorage_proxyrunner.protocol.sse import EventParser
from moorage_proxyrunner.sessionstore.memory import MemoryStore
from moorage_proxyrunner.sessionstore.records import Json, SessionRecord
from moorage_proxyrunner.sessionstore.store import SessionStoreUnavailable

LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
SUBSCRIBE = {
    "jsonrpc": "2.0",
    "id": 3,
    "method": "resources/subscribe",
    "params": {"uri": "test://watched"},
}


@dataclass
class Ending(Upstream):
    """The fake upstream, which also ends sessions (`DELETE`)."""

    deleted: list[str] = field(default_factory=list)

    async def delete(self, request: web.Request) -> web.Response:
        self.deleted.append(request.headers["Mcp-Session-Id"])
        return web.Response()


class FlakyStore(MemoryStore):
    """A memory store every replica shares, which can be made unreachable."""

    def __init__(self) -> None:
        super().__init__(max_sessions=100, resume_window=0)
        self.down = False
        self.rival: str | None = None
        """A replica that claims every session a moment before anyone else does."""

    @property
    def shared(self) -> bool:
        return True

    def _check(self) -> None:
        if self.down:
            raise SessionStoreUnavailable("session storage unavailable: connection refused")

    async def create(self, record: SessionRecord, *, idle_timeout: float) -> None:
        self._check()
        await super().create(record, idle_timeout=idle_timeout)

    async def load(self, session_id: str) -> SessionRecord | None:
        self._check()
        return await super().load(session_id)

    async def set_state(self, session_id: str, changes: Mapping[str, Json | None]) -> None:
        self._check()
        await super().set_state(session_id, changes)

    async def is_alive(self, address: str) -> bool:
        self._check()
        return await super().is_alive(address)

    async def claim(self, session_id: str, *, expected_owner: str, owner: str) -> bool:
        if self.rival is not None:
            await super().claim(session_id, expected_owner=expected_owner, owner=self.rival)
        return await super().claim(session_id, expected_owner=expected_owner, owner=owner)


@dataclass
class Replica:
    client: TestClient[Any, Any]
    endpoints: HttpEndpoints
    registry: CollectorRegistry

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@contextlib.asynccontextmanager
async def replica(
    url: str, store: FlakyStore, transport: str = "streamable-http"
) -> AsyncIterator[Replica]:
    port = free_port()
    address = f"127.0.0.1:{port}"
    registry = CollectorRegistry()
    settings = ProxyRunnerSettings(port=port)
    endpoints = HttpEndpoints(
        [url],
        transport=transport,
        settings=settings,
        pipeline=Pipeline(),
        metrics=ProxyMetrics(registry),
        store=store,
        address=address,
    )
    await store.heartbeat(address, ttl=600)
    app = make_app(settings, endpoints=endpoints, registry=registry)
    app.middlewares.append(subject_header)
    async with TestClient(TestServer(app, port=port)) as client:
        yield Replica(client, endpoints, registry)


def streamable_app(upstream: Ending) -> web.Application:
    app = web.Application()
    app.router.add_post("/mcp", upstream.mcp)
    app.router.add_get("/mcp", upstream.stream)
    app.router.add_delete("/mcp", upstream.delete)
    return app


@contextlib.asynccontextmanager
async def two_replicas(
    app: web.Application, path: str = "/mcp", transport: str = "streamable-http"
) -> AsyncIterator[tuple[FlakyStore, Replica, contextlib.AsyncExitStack, Replica]]:
    """Two replicas in front of the upstream `app` serves at `path`: the store, the first
    replica (with the stack that stops it) and the second."""
    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(TestServer(app))
        url = str(server.make_url(path))
        store = FlakyStore()
        first_stack = await stack.enter_async_context(contextlib.AsyncExitStack())
        first = await first_stack.enter_async_context(replica(url, store, transport))
        second = await stack.enter_async_context(replica(url, store, transport))
        yield store, first, first_stack, second


async def test_a_session_opened_on_one_replica_is_served_by_the_other_for_its_subject() -> None:
    upstream = Ending("a")
    async with two_replicas(streamable_app(upstream)) as (store, first, _, second):
        opened = await first.client.post("/mcp", json=INITIALIZE, headers=headers(subject="al"))
        session = opened.headers["Mcp-Session-Id"]
        stored = await store.load(session)
        assert stored is not None
        assert (stored.kind, stored.owner, stored.subject) == (
            "streamable-http",
            first.endpoints.address,
            "al",
        )
        assert stored.state == {"target": upstream_url(first)}

        async def refused() -> None:
            foreign = await second.client.post("/mcp", json=LIST, headers=headers(session, "bob"))
            unknown = await second.client.post("/mcp", json=LIST, headers=headers("nope", "bob"))
            assert foreign.status == unknown.status == 404
            assert await foreign.json() == await unknown.json()
            anonymous = await second.client.post("/mcp", json=LIST, headers=headers(session))
            assert anonymous.status == 404

        await refused()  # from the record alone
        served = await second.client.post("/mcp", json=LIST, headers=headers(session, "al"))
        assert served.status == 200
        assert (await served.json())["result"] == {"server": "a"}
        assert upstream.posted[-1] == (LIST, session)
        assert second.metric("moorage_proxy_requests_forwarded_total", outcome="ok") == 0
        await refused()  # and once pinned there
        assert [body["method"] for body, _ in upstream.posted] == ["initialize", "tools/list"]


def upstream_url(replica: Replica) -> str:
    return replica.endpoints.targets[0]


async def test_the_get_stream_goes_to_the_owner_and_is_adopted_once_it_is_gone() -> None:
    upstream = Ending("a", events=b"id: e1\nevent: message\ndata: {}\n\n")
    async with two_replicas(streamable_app(upstream)) as (store, first, first_stack, second):
        opened = await first.client.post("/mcp", json=INITIALIZE, headers=headers(subject="al"))
        session = opened.headers["Mcp-Session-Id"]
        get = {"Accept": "text/event-stream", "Mcp-Session-Id": session, "X-Subject": "al"}
        relayed = await second.client.get("/mcp", headers=get)
        assert relayed.status == 200
        assert await relayed.read() == upstream.events
        assert second.metric("moorage_proxy_requests_forwarded_total", outcome="ok") == 1

        subscribed = await second.client.post(
            "/mcp", json=SUBSCRIBE, headers=headers(session, "al")
        )
        assert subscribed.status == 200
        assert second.metric("moorage_proxy_requests_forwarded_total", outcome="ok") == 2
        stored = await store.load(session)
        assert stored is not None
        assert stored.state["subscriptions"] == ["test://watched"]

        await first_stack.aclose()  # the owner is gone (its heartbeat has not run out yet)
        adopted = await second.client.get("/mcp", headers=get)
        assert adopted.status == 200
        assert await adopted.read() == upstream.events
        assert second.metric("moorage_proxy_sessions_adopted_total", kind="streamable-http") == 1
        stored = await store.load(session)
        assert stored is not None
        assert stored.owner == second.endpoints.address

        # What the old owner tracked is the adopter's now: a policy change ends it there.
        assert second.endpoints.recheck_subscriptions(lambda identity, uri: False) == 1
        for _ in range(100):
            if upstream.posted[-1][0]["method"] == "resources/unsubscribe":
                break
            await asyncio.sleep(0.01)
        assert upstream.posted[-1] == (
            {
                "jsonrpc": "2.0",
                "id": upstream.posted[-1][0]["id"],
                "method": "resources/unsubscribe",
                "params": {"uri": "test://watched"},
            },
            session,
        )


async def test_without_the_store_new_sessions_get_503_and_held_ones_go_on() -> None:
    upstream = Ending("a")
    async with two_replicas(streamable_app(upstream)) as (store, first, _, second):
        opened = await first.client.post("/mcp", json=INITIALIZE, headers=headers(subject="al"))
        session = opened.headers["Mcp-Session-Id"]
        store.down = True

        refused = await first.client.post("/mcp", json=INITIALIZE, headers=headers(subject="al"))
        assert refused.status == 503
        error = (await refused.json())["error"]
        assert error == {
            "code": -32000,
            "message": "session storage unavailable: connection refused",
        }
        for _ in range(100):  # the session the store could not keep is ended upstream
            if upstream.deleted:
                break
            await asyncio.sleep(0.01)
        assert upstream.deleted == ["a-1"]

        held = await first.client.post("/mcp", json=LIST, headers=headers(session, "al"))
        assert held.status == 200
        elsewhere = await second.client.post("/mcp", json=LIST, headers=headers(session, "al"))
        assert elsewhere.status == 503
        assert (await elsewhere.json())["error"]["code"] == -32000
        stolen = await first.client.post("/mcp", json=LIST, headers=headers(session, "bob"))
        assert stolen.status == 404
        assert first.metric("moorage_proxy_session_store_errors_total", operation="create") == 1
        assert second.metric("moorage_proxy_session_store_errors_total", operation="load") == 1

        store.down = False
        again = await second.client.post("/mcp", json=INITIALIZE, headers=headers(subject="al"))
        assert again.status == 200


class SseUpstream:
    """A legacy HTTP+SSE MCP server answering every request on the stream it came for."""

    def __init__(self) -> None:
        self.streams: dict[str, asyncio.Queue[bytes]] = {}
        self.posted: list[dict[str, Any]] = []

    async def sse(self, request: web.Request) -> web.StreamResponse:
        stream_id = str(len(self.streams))
        queue = self.streams[stream_id] = asyncio.Queue()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(f"event: endpoint\ndata: /messages?sid={stream_id}\n\n".encode())
        while True:
            await response.write(await queue.get())

    async def messages(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.posted.append(body)
        if "id" in body and "method" in body:
            answer = {"jsonrpc": "2.0", "id": body["id"], "result": {"for": body["method"]}}
            event = f"event: message\ndata: {json.dumps(answer)}\n\n".encode()
            self.streams[request.query["sid"]].put_nowait(event)
        return web.Response(status=202)


async def next_message(stream: Any, parser: EventParser) -> tuple[str, Any]:
    """The next event on a client's SSE stream: its type and data (JSON for a message)."""
    while True:
        chunk = await asyncio.wait_for(stream.content.readany(), timeout=5)
        assert chunk, "the stream ended"
        for event in parser.feed(chunk):
            return event.event, json.loads(event.data) if event.event == "message" else event.data


async def test_an_sse_post_on_another_replica_is_answered_on_the_stream_until_it_is_gone() -> None:
    upstream = SseUpstream()
    app = web.Application()
    app.router.add_get("/sse", upstream.sse)
    app.router.add_post("/messages", upstream.messages)
    async with two_replicas(app, "/sse", "sse") as (store, first, first_stack, second):
        url = upstream_url(first)

        stream = await first.client.get("/sse", headers={"X-Subject": "al"})
        parser = EventParser()
        kind, endpoint = await next_message(stream, parser)
        assert kind == "endpoint"
        path = endpoint[endpoint.index("/messages") :]
        stored = await store.load(path.rsplit("=", 1)[1])
        assert stored is not None
        assert (stored.kind, stored.owner, stored.subject) == ("sse", first.endpoints.address, "al")
        assert stored.state == {"target": url, "messages": url.replace("/sse", "/messages?sid=0")}

        posted = await second.client.post(path, json=LIST, headers=headers(subject="al"))
        assert posted.status == 202
        assert await next_message(stream, parser) == (
            "message",
            {"jsonrpc": "2.0", "id": 2, "result": {"for": "tools/list"}},
        )
        assert second.metric("moorage_proxy_requests_forwarded_total", outcome="ok") == 1

        # Another subject, or a request already forwarded once: the 404 of an unknown session.
        for subject, extra in (("bob", {}), ("al", {"X-Moorage-Forwarded": "10.0.0.9:1"})):
            refused = await second.client.post(
                path, json=LIST, headers={**headers(subject=subject), **extra}
            )
            assert refused.status == 404
            assert (await refused.json())["error"]["message"] == "Session not found"
        assert second.metric("moorage_proxy_requests_forwarded_total", outcome="ok") == 1
        assert len(upstream.posted) == 1

        store.down = True
        down = await second.client.post(path, json=LIST, headers=headers(subject="al"))
        assert down.status == 503
        assert (await down.json())["error"]["code"] == -32000
        refused_stream = await second.client.get("/sse", headers={"X-Subject": "al"})
        assert refused_stream.status == 503
        store.down = False

        stream.close()
        await first_stack.aclose()  # the stream's replica is gone: so is the session
        gone = await second.client.post(path, json=LIST, headers=headers(subject="al"))
        assert gone.status == 404
        assert len(upstream.posted) == 1


async def test_a_replica_that_loses_the_race_to_adopt_a_session_sends_it_to_the_winner() -> None:
    upstream = Ending("a")
    async with (
        two_replicas(streamable_app(upstream)) as (store, first, first_stack, second),
        replica(upstream_url(first), store) as third,
    ):
        opened = await first.client.post("/mcp", json=INITIALIZE, headers=headers(subject="al"))
        session = opened.headers["Mcp-Session-Id"]
        await first.client.post("/mcp", json=SUBSCRIBE, headers=headers(session, "al"))
        await first_stack.aclose()

        store.rival = third.endpoints.address
        get = {"Accept": "text/event-stream", "Mcp-Session-Id": session, "X-Subject": "al"}
        relayed = await second.client.get("/mcp", headers=get)
        assert relayed.status == 200
        assert second.metric("moorage_proxy_sessions_adopted_total", kind="streamable-http") == 0
        assert second.metric("moorage_proxy_requests_forwarded_total", outcome="ok") == 1
        stored = await store.load(session)
        assert stored is not None
        assert stored.owner == third.endpoints.address
        # The winner serves it as its own: the subscription is its to end.
        assert second.endpoints.recheck_subscriptions(lambda identity, uri: False) == 0
        assert third.endpoints.recheck_subscriptions(lambda identity, uri: False) == 1
