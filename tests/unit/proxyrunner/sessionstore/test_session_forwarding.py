"""Forwarding a request to the replica that owns its session: what reaches the owner (method,
path, query, body, `Authorization`, not the hop-by-hop headers, `Host` naming the owner, the
forwarded mark), the answer streamed back chunk by chunk, and None when the owner is gone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from testkit.commands import free_port

from moorage_proxyrunner.sessionstore.forwarding import (
    FORWARDED_HEADER,
    Forwarder,
    is_forwarded,
    passed_headers,
)

SENDER = "127.0.0.1:1"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
def outcomes() -> list[str]:
    return []


@pytest.fixture
async def forwarder(outcomes: list[str]) -> AsyncIterator[Forwarder]:
    forwarder = Forwarder(on_outcome=outcomes.append)
    yield forwarder
    await forwarder.close()


async def owner_at(handler: Handler) -> TestServer:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def front(forwarder: Forwarder, owner: str) -> TestClient[web.Request, web.Application]:
    """A replica that forwards everything to `owner`, answering 599 when it cannot."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        answer = await forwarder.forward_to_owner(
            request, owner=owner, body=body or None, address=SENDER
        )
        return answer if answer is not None else web.Response(status=599, text="adopt")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return TestClient(TestServer(app))


async def test_the_request_reaches_the_owner_as_the_client_sent_it(
    forwarder: Forwarder, outcomes: list[str]
) -> None:
    seen: dict[str, object] = {}

    async def owner(request: web.Request) -> web.StreamResponse:
        seen.update(
            method=request.method,
            path_qs=request.path_qs,
            headers=dict(request.headers),
            body=await request.read(),
            forwarded=is_forwarded(request),
        )
        return web.json_response({"ok": True}, status=202, headers={"Mcp-Session-Id": "s1"})

    server = await owner_at(owner)
    address = f"127.0.0.1:{server.port}"
    try:
        async with front(forwarder, address) as client:
            response = await client.post(
                "/mcp?session_id=abc&x=1",
                data=b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
                headers={
                    "Authorization": "Bearer t0k3n",
                    "Content-Type": "application/json",
                    "Mcp-Session-Id": "s1",
                    "Connection": "keep-alive, X-Private",
                    "X-Private": "per-connection",
                    "TE": "trailers",
                    "Proxy-Authorization": "Basic c2VjcmV0",
                },
            )
            assert response.status == 202
            assert response.headers["Mcp-Session-Id"] == "s1"
            assert await response.json() == {"ok": True}
    finally:
        await server.close()
    headers = seen["headers"]
    assert isinstance(headers, dict)
    assert seen["method"] == "POST"
    assert seen["path_qs"] == "/mcp?session_id=abc&x=1"
    assert seen["body"] == b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    assert seen["forwarded"] is True
    assert headers["Authorization"] == "Bearer t0k3n"
    assert headers["Mcp-Session-Id"] == "s1"
    assert headers["Host"] == address
    assert headers[FORWARDED_HEADER] == SENDER
    for dropped in ("X-Private", "TE", "Proxy-Authorization"):
        assert dropped not in headers
    assert outcomes == ["ok"]


async def test_a_stream_comes_back_chunk_by_chunk(forwarder: Forwarder) -> None:
    release = asyncio.Event()

    async def owner(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"id: 1\ndata: first\n\n")
        await release.wait()
        await response.write(b"id: 2\ndata: second\n\n")
        await response.write_eof()
        return response

    server = await owner_at(owner)
    try:
        async with front(forwarder, f"127.0.0.1:{server.port}") as client:
            response = await client.get("/mcp", headers={"Last-Event-ID": "0"})
            assert response.headers["Content-Type"] == "text/event-stream"
            # The first event arrives while the owner still holds the stream open.
            first = await asyncio.wait_for(response.content.readuntil(b"\n\n"), 5)
            assert first == b"id: 1\ndata: first\n\n"
            release.set()
            assert await asyncio.wait_for(response.content.read(), 5) == (
                b"id: 2\ndata: second\n\n"
            )
    finally:
        await server.close()


async def test_an_owner_that_is_not_listening_gives_none(
    forwarder: Forwarder, outcomes: list[str]
) -> None:
    async with front(forwarder, f"127.0.0.1:{free_port()}") as client:
        response = await client.post("/mcp", data=b"{}")
        assert response.status == 599
    assert outcomes == ["owner_unreachable"]


async def test_an_owner_that_dies_before_answering_is_a_502_not_an_adoption(
    forwarder: Forwarder, outcomes: list[str]
) -> None:
    async def owner(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        await asyncio.sleep(0.1)
        return web.Response()

    server = await owner_at(owner)
    try:
        async with front(forwarder, f"127.0.0.1:{server.port}") as client:
            response = await client.post("/mcp", data=b"{}")
            assert response.status == 502
            body = await response.json()
            assert body["error"]["code"] == -32000
    finally:
        await server.close()
    assert outcomes == ["owner_lost"]


def test_hop_by_hop_headers_and_those_connection_names_are_not_passed() -> None:
    passed = passed_headers(
        {
            "Connection": "close, X-A",
            "X-A": "1",
            "Keep-Alive": "5",
            "Upgrade": "h2c",
            "Transfer-Encoding": "chunked",
            "Content-Length": "3",
            "Host": "proxy",
            "Accept": "text/event-stream",
            "Last-Event-ID": "7",
        }
    )
    assert dict(passed) == {"Accept": "text/event-stream", "Last-Event-ID": "7"}
