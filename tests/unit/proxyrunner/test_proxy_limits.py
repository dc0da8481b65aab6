"""The proxy's limits against the attacks they answer, through the real HTTP front end over a
scripted stdio server: a request the server drops, too many sessions, oversized capabilities,
a slow reader's mailbox, a flooding session, trickling clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from testkit.stdiochannels import MemoryChannel, ScriptedServer
from testkit.subjects import subject_header
from testkit.waiting import eventually

from moorage_proxyrunner.backends.stdio.bridge import StdioBridge
from moorage_proxyrunner.backends.stdio.endpoints import BridgeEndpoints
from moorage_proxyrunner.config.limits import LIMIT_REACHED, REQUEST_TIMED_OUT, Limits
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.front.app import make_app, serve
from moorage_proxyrunner.front.metrics import ProxyMetrics
from moorage_proxyrunner.protocol import eras
from moorage_proxyrunner.protocol.pipeline import Pipeline

JSON = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


@dataclass
class Proxy:
    client: TestClient[Any, Any]
    scripted: ScriptedServer
    endpoints: BridgeEndpoints

    @property
    def server(self) -> MemoryChannel:
        return self.scripted.server

    async def initialize(
        self, subject: str | None = None, capabilities: dict[str, Any] | None = None
    ) -> aiohttp.ClientResponse:
        body = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": capabilities or {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        }
        headers = {**JSON, **({"X-Subject": subject} if subject else {})}
        return await self.client.post("/mcp", json=body, headers=headers)

    async def session(self, subject: str | None = None) -> str:
        resp = await self.initialize(subject)
        assert resp.status == 200, await resp.text()
        return resp.headers["Mcp-Session-Id"]

    async def call(self, session: str, tag: str, request_id: int = 1) -> dict[str, Any]:
        resp = await self.client.post(
            "/mcp",
            json=call(tag, request_id),
            headers={**JSON, "Accept": "application/json", "Mcp-Session-Id": session},
        )
        answer: dict[str, Any] = await resp.json()
        answer["status"] = resp.status
        return answer


def call(tag: str, request_id: int = 1) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": tag}},
    }


def build(settings: ProxyRunnerSettings) -> tuple[web.Application, ScriptedServer, BridgeEndpoints]:
    scripted = ScriptedServer()
    bridge = StdioBridge(scripted.factory, backoff_initial=0.01, backoff_max=0.05)
    registry = CollectorRegistry()
    endpoints = BridgeEndpoints(
        bridge, settings=settings, pipeline=Pipeline(), metrics=ProxyMetrics(registry)
    )
    app = make_app(settings, endpoints=endpoints, registry=registry)
    app.middlewares.append(subject_header)
    return app, scripted, endpoints


@contextlib.asynccontextmanager
async def proxy_with(**limits: Any) -> AsyncIterator[Proxy]:
    settings = ProxyRunnerSettings(port=0, keepalive_interval=0.1, limits=Limits(**limits))
    app, scripted, endpoints = build(settings)
    async with TestClient(TestServer(app)) as client:
        assert await endpoints.bridge.wait_connected(10)
        yield Proxy(client, scripted, endpoints)


@pytest_asyncio.fixture
async def proxy() -> AsyncIterator[Proxy]:
    async with proxy_with(request_timeout=0.3) as proxy:
        yield proxy


async def read_event(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    """The next `message` event's JSON on an SSE response (keep-alives skipped)."""
    while True:
        block = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), timeout=10)
        for line in block.decode().splitlines():
            if line.startswith("data: {"):
                event: dict[str, Any] = json.loads(line.removeprefix("data: "))
                return event


# ---- a request the server drops ----


async def test_a_dropped_request_times_out_and_is_cancelled_at_the_server(proxy: Proxy) -> None:
    session = await proxy.session()
    answer = asyncio.create_task(proxy.call(session, "dropped", request_id=41))
    forwarded = await proxy.server.read("tools/call")
    reply = await answer
    assert reply["id"] == 41
    assert reply["error"]["code"] == REQUEST_TIMED_OUT
    assert "did not answer within 0.3s" in reply["error"]["message"]
    cancelled = await proxy.server.read("notifications/cancelled")
    assert cancelled["params"]["requestId"] == forwarded["id"]
    assert proxy.endpoints.bridge.inflight == 0


async def test_a_dropped_request_on_the_sse_transport_times_out_on_the_stream(
    proxy: Proxy,
) -> None:
    stream = await proxy.client.get("/sse", headers={"Accept": "text/event-stream"})
    endpoint = (await stream.content.readuntil(b"\n\n")).decode().split("data: ")[1].strip()
    posted = await proxy.client.post(endpoint, json=call("dropped", 5), headers=JSON)
    assert posted.status == 202
    forwarded = await proxy.server.read("tools/call")
    event = await read_event(stream)
    assert event["id"] == 5
    assert event["error"]["code"] == REQUEST_TIMED_OUT
    cancelled = await proxy.server.read("notifications/cancelled")
    assert cancelled["params"]["requestId"] == forwarded["id"]
    stream.close()


async def test_a_dropped_request_on_the_modern_wire_times_out(proxy: Proxy) -> None:
    body = call("dropped", 9)
    body["params"]["_meta"] = {
        eras.PROTOCOL_VERSION_KEY: eras.MODERN_VERSIONS[0],
        eras.CLIENT_CAPABILITIES_KEY: {},
    }
    headers = {
        **JSON,
        "Accept": "application/json",
        "MCP-Protocol-Version": eras.MODERN_VERSIONS[0],
        "Mcp-Method": "tools/call",
        "Mcp-Name": "echo",
    }
    answer = asyncio.create_task(proxy.client.post("/mcp", json=body, headers=headers))
    forwarded = await proxy.server.read("tools/call")
    reply = await (await answer).json()
    assert reply["error"]["code"] == REQUEST_TIMED_OUT
    cancelled = await proxy.server.read("notifications/cancelled")
    assert cancelled["params"]["requestId"] == forwarded["id"]


# ---- sessions ----


async def test_sessions_beyond_the_caps_are_refused_with_a_reason() -> None:
    async with proxy_with(max_sessions=2, max_sessions_per_subject=1) as proxy:
        await proxy.session("alice")
        second = await proxy.initialize("alice")
        assert second.status == 429
        refusal = await second.json()
        assert refusal["error"]["code"] == LIMIT_REACHED
        assert "at most 1 per client" in refusal["error"]["message"]
        await proxy.session("bob")
        full = await proxy.initialize("carol")
        assert full.status == 503
        assert "2 sessions open" in (await full.json())["error"]["message"]
        sse = await proxy.client.get("/sse", headers={"Accept": "text/event-stream"})
        assert sse.status == 503
        assert len(proxy.endpoints.sessions) == 2


async def test_a_closed_session_frees_its_place() -> None:
    async with proxy_with(max_sessions=1) as proxy:
        session = await proxy.session()
        assert (await proxy.initialize()).status == 503
        await proxy.client.delete("/mcp", headers={"Mcp-Session-Id": session})
        await proxy.session()


async def test_oversized_client_capabilities_are_refused() -> None:
    async with proxy_with(max_capabilities_bytes=1024) as proxy:
        resp = await proxy.initialize(capabilities={"experimental": {"x": "y" * 2048}})
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == -32602
        assert len(proxy.endpoints.sessions) == 0
        assert (await proxy.initialize(capabilities={"roots": {}})).status == 200


# ---- a slow reader ----


async def test_a_slow_readers_mailbox_is_bounded_in_bytes_and_its_stream_ends() -> None:
    async with proxy_with(queue_max_bytes=64 * 1024) as proxy:
        port = proxy.client.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /sse HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        first = await reader.readuntil(b"\n\n")
        endpoint = first.decode().split("data: ")[1].strip()
        (session,) = proxy.endpoints.sessions._sessions.values()
        mailbox = session.peer.mailbox
        assert mailbox is not None
        assert mailbox.max_bytes == 64 * 1024
        big = "x" * (256 * 1024)

        async def answer_all() -> None:
            while True:
                request = await proxy.server.read("tools/call")
                proxy.server.write({"jsonrpc": "2.0", "id": request["id"], "result": {"t": big}})

        answering = asyncio.create_task(answer_all())
        try:
            # The client reads nothing more; replies pile up until the bound ends the stream.
            for n in range(200):
                resp = await proxy.client.post(endpoint, json=call("big", n), headers=JSON)
                if resp.status == 404:
                    break
                await asyncio.sleep(0)
            await eventually(lambda: mailbox.closed, message="mailbox closed")
            assert mailbox.overflowed
            # The stuck stream was dropped, and the session with it.
            await eventually(lambda: len(proxy.endpoints.sessions) == 0, message="session gone")
            # ... so the client's connection ends (read to EOF; a hang fails the test).
            await asyncio.wait_for(reader.read(), timeout=10)
        finally:
            answering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await answering
            writer.close()


# ---- fairness on the shared server ----


async def test_a_flooding_session_does_not_starve_another() -> None:
    async with proxy_with(max_backend_inflight=1, max_inflight_per_session=3) as proxy:
        flooder, other = await proxy.session(), await proxy.session()
        floods = [
            asyncio.create_task(proxy.call(flooder, f"flood-{n}", request_id=n)) for n in range(3)
        ]
        first = await proxy.server.read("tools/call")
        assert first["params"]["arguments"]["text"] == "flood-0"
        await eventually(lambda: proxy.endpoints.gate.waiting == 2, message="floods queued")
        mine = asyncio.create_task(proxy.call(other, "mine"))
        await eventually(lambda: proxy.endpoints.gate.waiting == 3, message="call queued")
        proxy.server.write({"jsonrpc": "2.0", "id": first["id"], "result": {}})
        # The freed slot goes to the other session, ahead of the flooder's two waiting calls.
        second = await proxy.server.read("tools/call")
        assert second["params"]["arguments"]["text"] == "mine"
        proxy.server.write({"jsonrpc": "2.0", "id": second["id"], "result": {"ok": 1}})
        assert (await mine)["result"] == {"ok": 1}
        for _ in range(2):
            request = await proxy.server.read("tools/call")
            assert request["params"]["arguments"]["text"].startswith("flood-")
            proxy.server.write({"jsonrpc": "2.0", "id": request["id"], "result": {}})
        assert all("result" in reply for reply in await asyncio.gather(*floods))


async def test_a_session_over_its_inflight_limit_is_refused() -> None:
    async with proxy_with(max_inflight_per_session=2) as proxy:
        session = await proxy.session()
        held = [asyncio.create_task(proxy.call(session, "held", request_id=n)) for n in range(2)]
        ids = [(await proxy.server.read("tools/call"))["id"] for _ in range(2)]
        refused = await proxy.call(session, "one-more", request_id=3)
        assert refused["status"] == 429
        assert refused["error"]["code"] == LIMIT_REACHED
        for backend_id in ids:
            proxy.server.write({"jsonrpc": "2.0", "id": backend_id, "result": {}})
        await asyncio.gather(*held)
        other = asyncio.create_task(proxy.call(session, "after", request_id=4))
        request = await proxy.server.read("tools/call")
        proxy.server.write({"jsonrpc": "2.0", "id": request["id"], "result": {}})
        assert "result" in await other


# ---- slow clients at the HTTP layer ----


@pytest.mark.parametrize(
    ("head", "tail"),
    [
        (b"POST /mcp HTTP/1.1\r\n", b"Host: 127.0.0.1\r\nContent-Type: application/json\r\n\r\n"),
        (
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 60\r\n\r\n",
            b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{}}       ',
        ),
    ],
    ids=["headers", "body"],
)
async def test_a_trickling_client_is_cut_while_an_sse_stream_stays_open(
    head: bytes, tail: bytes
) -> None:
    limits = Limits(header_timeout=0.3, body_timeout=0.3)
    settings = ProxyRunnerSettings(port=0, keepalive_interval=0.1, drain_timeout=0.5, limits=limits)
    app, _, _ = build(settings)
    stop = asyncio.Event()
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    serving = asyncio.create_task(
        serve(app, settings, stop=stop, on_listening=port.set_result, handle_signals=False)
    )
    try:
        base = f"127.0.0.1:{await port}"
        async with aiohttp.ClientSession() as http:
            stream = await http.get(f"http://{base}/sse", headers={"Accept": "text/event-stream"})
            await stream.content.readuntil(b"\n\n")
            reader, writer = await asyncio.open_connection("127.0.0.1", await port)
            writer.write(head)
            cut = False
            for byte in tail:
                writer.write(bytes([byte]))
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(reader.read(1024), timeout=0.1) == b"":
                        cut = True
                        break
            writer.close()
            assert cut, "the trickling connection was not cut"
            # The stream is older than the deadlines and still delivers keep-alives.
            assert await stream.content.readuntil(b"\n\n") == b": keep-alive\n\n"
            stream.close()
    finally:
        stop.set()
        await serving


# ---- resource subscriptions ----


def subscribe(method: str, uri: str, request_id: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {"uri": uri}}


async def test_a_session_over_its_subscription_limit_is_refused() -> None:
    async with proxy_with(max_subscriptions_per_session=2) as proxy:
        session = await proxy.session()
        headers = {**JSON, "Accept": "application/json", "Mcp-Session-Id": session}

        async def post(method: str, uri: str, request_id: int) -> tuple[int, dict[str, Any]]:
            body = subscribe(method, uri, request_id)
            resp = await proxy.client.post("/mcp", json=body, headers=headers)
            return resp.status, await resp.json()

        async def forwarded(method: str, uri: str, request_id: int) -> dict[str, Any]:
            answer = asyncio.create_task(post(method, uri, request_id))
            request = await proxy.server.read(method)
            assert request["params"] == {"uri": uri}
            proxy.server.write({"jsonrpc": "2.0", "id": request["id"], "result": {}})
            status, reply = await answer
            assert status == 200
            return reply

        await forwarded("resources/subscribe", "file:///a", 1)
        await forwarded("resources/subscribe", "file:///b", 2)
        # Holding one again takes nothing more.
        assert await post("resources/subscribe", "file:///a", 3) == (
            200,
            {"jsonrpc": "2.0", "id": 3, "result": {}},
        )
        status, refused = await post("resources/subscribe", "file:///c", 4)
        assert status == 429
        assert refused["id"] == 4
        assert refused["error"]["code"] == LIMIT_REACHED
        assert refused["error"]["message"] == (
            "Too many resource subscriptions: at most 2 per session "
            "(MAX_SUBSCRIPTIONS_PER_SESSION); unsubscribe from one and retry"
        )
        await forwarded("resources/unsubscribe", "file:///a", 5)
        await forwarded("resources/subscribe", "file:///c", 6)


async def test_a_listen_asking_for_more_subscriptions_than_the_limit_is_refused() -> None:
    async with proxy_with(max_subscriptions_per_session=2) as proxy:
        version = eras.MODERN_VERSIONS[0]
        body = {
            "jsonrpc": "2.0",
            "id": 9,
            "method": "subscriptions/listen",
            "params": {
                "_meta": {
                    eras.PROTOCOL_VERSION_KEY: version,
                    eras.CLIENT_CAPABILITIES_KEY: {},
                },
                "notifications": {"resourceSubscriptions": ["file:///a", "file:///b", "c:"]},
            },
        }
        headers = {**JSON, "MCP-Protocol-Version": version, "Mcp-Method": "subscriptions/listen"}
        resp = await proxy.client.post("/mcp", json=body, headers=headers)
        assert resp.status == 429
        answer = await resp.json()
        assert (answer["id"], answer["error"]["code"]) == (9, LIMIT_REACHED)
        assert "at most 2 per session" in answer["error"]["message"]
