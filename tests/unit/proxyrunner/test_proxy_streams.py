"""Client streams: unbuffered SSE with keep-alives, bounded queues, deferred JSON-or-SSE answers."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from moorage_proxyrunner.front.responding import ResponseStream, stream_mailbox
from moorage_proxyrunner.front.streams import Exchange, Mailbox


async def test_a_stream_sends_keepalives_events_and_no_buffering_headers() -> None:
    mailbox = Mailbox()

    async def handler(request: web.Request) -> web.StreamResponse:
        return await stream_mailbox(
            request, mailbox, keepalive=0.05, first=b"event: endpoint\ndata: /m\n\n"
        )

    app = web.Application()
    app.router.add_get("/s", handler)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/s")
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert resp.headers["X-Accel-Buffering"] == "no"
        assert "no-cache" in resp.headers["Cache-Control"]
        assert await resp.content.readuntil(b"\n\n") == b"event: endpoint\ndata: /m\n\n"
        assert await resp.content.readuntil(b"\n\n") == b": keep-alive\n\n"
        mailbox.push({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        event = await resp.content.readuntil(b"\n\n")
        while event == b": keep-alive\n\n":
            event = await resp.content.readuntil(b"\n\n")
        assert (
            event
            == b'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n\n'
        )
        mailbox.close()
        assert (await resp.content.read()).replace(b": keep-alive\n\n", b"") == b""


def test_a_full_mailbox_closes_rather_than_grows() -> None:
    mailbox = Mailbox(capacity=2)
    assert mailbox.push({"n": 1})
    assert mailbox.push({"n": 2})
    assert not mailbox.push({"n": 3})
    assert mailbox.closed
    assert mailbox.overflowed
    assert mailbox.take() == [{"n": 1}, {"n": 2}]


def test_a_full_exchange_drops_interim_messages_but_keeps_the_answer() -> None:
    exchange = Exchange(capacity=1)
    assert exchange.push({"n": 1})
    assert not exchange.push({"n": 2})
    exchange.finish({"id": 1, "result": {}})
    assert exchange.dropped == 1
    assert exchange.final == {"id": 1, "result": {}}
    assert not exchange.push({"n": 3})


async def _answer(exchange: Exchange, interim: bool) -> tuple[str, bytes]:
    """(content type, body) of the answer a client receives."""

    async def handler(request: web.Request) -> web.StreamResponse:
        stream = ResponseStream(request, exchange, keepalive=5.0)
        return await stream.finish(await stream.pump())

    app = web.Application()
    app.router.add_post("/mcp", handler)
    async with TestClient(TestServer(app)) as client:
        pending = asyncio.ensure_future(client.post("/mcp"))
        if interim:
            exchange.push(
                {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}}
            )
        exchange.finish({"jsonrpc": "2.0", "id": 1, "result": {}})
        resp = await pending
        return resp.content_type, await resp.read()


async def test_an_answer_with_nothing_before_it_is_plain_json() -> None:
    assert await _answer(Exchange(), interim=False) == (
        "application/json",
        b'{"jsonrpc":"2.0","id":1,"result":{}}',
    )


async def test_an_answer_after_progress_is_an_sse_stream() -> None:
    assert await _answer(Exchange(), interim=True) == (
        "text/event-stream",
        b'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}\n\n'
        b'event: message\ndata: {"jsonrpc":"2.0","id":1,"result":{}}\n\n',
    )


def test_a_mailbox_over_its_byte_bound_closes_and_drops_its_connection() -> None:
    dropped: list[bool] = []
    mailbox = Mailbox(capacity=100, max_bytes=1024)
    mailbox.on_overflow = lambda: dropped.append(True)
    assert mailbox.push({"data": "x" * 600})
    assert not mailbox.push({"data": "y" * 600})
    assert mailbox.closed
    assert mailbox.overflowed
    assert dropped == [True]


def test_an_exchange_over_its_byte_bound_drops_interim_messages() -> None:
    exchange = Exchange(capacity=100, max_bytes=1024)
    assert exchange.push({"data": "x" * 600})
    assert not exchange.push({"data": "y" * 600})
    assert exchange.take() == [{"data": "x" * 600}]
    # Taken messages no longer count against the bound.
    assert exchange.push({"data": "z" * 600})


def test_one_message_larger_than_the_bound_still_goes_through_alone() -> None:
    mailbox = Mailbox(capacity=100, max_bytes=1024)
    assert mailbox.push({"data": "x" * 4096})
    assert not mailbox.closed
