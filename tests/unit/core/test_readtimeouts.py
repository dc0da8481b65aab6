"""Slow clients (slowloris): a connection trickling a request's headers or body is cut at the
read deadline, while a long-lived response stream on another connection stays open."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest_asyncio
from aiohttp import web

from moorage_core.readtimeouts import ReadTimeouts
from moorage_core.serving import HTTPSServer

DEADLINE = 0.3


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    while True:
        await response.write(b": tick\n\n")
        await asyncio.sleep(DEADLINE / 3)


async def _echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read())


@pytest_asyncio.fixture
async def server() -> AsyncIterator[HTTPSServer]:
    app = web.Application()
    app.router.add_get("/stream", _stream)
    app.router.add_post("/echo", _echo)
    server = HTTPSServer(
        app,
        host="127.0.0.1",
        port=0,
        tls=None,
        shutdown_timeout=0.1,
        read_timeouts=ReadTimeouts(header=DEADLINE, body=DEADLINE),
    )
    await server.start()
    yield server
    await server.stop()


async def trickle(port: int, head: bytes, tail: bytes) -> bool:
    """Send `head` at once and `tail` a byte at a time; True when the server hung up first."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    try:
        for byte in tail:
            writer.write(bytes([byte]))
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DEADLINE / 3):
                    if await reader.read(1024) == b"":
                        return True
        return False
    except ConnectionError:
        return True
    finally:
        writer.close()


async def open_stream(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    return reader, writer


async def ticks_after(reader: asyncio.StreamReader, count: int) -> int:
    seen = 0
    while seen < count:
        line = await asyncio.wait_for(reader.readline(), timeout=5)
        assert line, "the response stream was closed"
        seen += line == b": tick\n"
    return seen


async def test_trickled_headers_are_cut_while_a_response_stream_stays_open(
    server: HTTPSServer,
) -> None:
    reader, writer = await open_stream(server.port)
    try:
        headers = b"Host: x\r\n" + b"X-Slow: " + b"a" * 200 + b"\r\n\r\n"
        assert await trickle(server.port, b"GET /stream HTTP/1.1\r\n", headers)
        # The stream outlived several deadlines and still flows.
        assert await ticks_after(reader, 3) == 3
    finally:
        writer.close()


async def test_a_trickled_body_is_cut(server: HTTPSServer) -> None:
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n"
    assert await trickle(server.port, head, b"b" * 200)


async def test_a_prompt_request_on_a_kept_alive_connection_is_answered(
    server: HTTPSServer,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        for _ in range(2):
            writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
            await writer.drain()
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
            await reader.readuntil(b"\r\n\r\nhi")
    finally:
        writer.close()


async def test_an_idle_kept_alive_connection_is_closed(server: HTTPSServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""
    finally:
        writer.close()
