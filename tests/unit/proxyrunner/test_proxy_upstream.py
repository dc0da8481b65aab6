"""The upstream HTTP/1.1 client: bodies by length, chunks or close; reuse; broken servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from moorage_proxyrunner.backends.reverse.upstream import Client, Target, UpstreamError


class Server:
    """A scripted HTTP server: `answers` are written in turn, one per request read."""

    def __init__(self) -> None:
        self.answers: list[list[bytes]] = []
        self.requests: list[bytes] = []
        self.connections = 0
        self.close_after_answer = False
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                self.requests.append(head + await reader.readexactly(length))
                for piece in self.answers.pop(0):
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0)
                if self.close_after_answer:
                    break
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    @property
    def target(self) -> Target:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return Target.parse(f"http://127.0.0.1:{port}/mcp")


@pytest_asyncio.fixture
async def server() -> AsyncIterator[Server]:
    scripted = Server()
    scripted.server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
    yield scripted
    scripted.server.close()
    await scripted.server.wait_closed()


@pytest_asyncio.fixture
async def client() -> AsyncIterator[Client]:
    c = Client(connect_timeout=5)
    yield c
    await c.close()


async def test_a_length_delimited_body_is_read_and_the_connection_reused(
    server: Server, client: Client
) -> None:
    server.answers = [
        [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: application/json\r\n\r\nhello"]
    ] * 2
    for _ in range(2):
        response = await client.request("POST", server.target, headers={"Accept": "x"}, body=b"{}")
        assert (response.status, response.content_type, await response.read()) == (
            200,
            "application/json",
            b"hello",
        )
    assert server.connections == 1
    assert server.requests[0].startswith(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:")
    assert server.requests[0].endswith(b"Accept: x\r\nContent-Length: 2\r\n\r\n{}")


async def test_a_chunked_stream_arrives_piece_by_piece(server: Server, client: Client) -> None:
    server.answers = [
        [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n",
            b"6\r\nevent1\r\n",
            b"6\r\nevent2\r\n",
            b"0\r\n\r\n",
        ]
    ]
    response = await client.request("GET", server.target, headers={})
    assert await response.first() == b"event1"
    assert [piece async for piece in response.chunks()] == [b"event1", b"event2"]
    assert response.at_end


async def test_a_body_without_length_ends_with_the_connection(
    server: Server, client: Client
) -> None:
    server.answers = [[b"HTTP/1.1 200 OK\r\n\r\nall of it"]]
    server.close_after_answer = True
    response = await client.request("GET", server.target, headers={})
    assert await response.read() == b"all of it"


async def test_connection_close_is_not_reused(server: Server, client: Client) -> None:
    server.answers = [[b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"]] * 2
    server.close_after_answer = True
    for _ in range(2):
        assert (await client.request("GET", server.target, headers={})).status == 200
    assert server.connections == 2


async def test_an_idle_connection_the_server_closed_is_replaced(
    server: Server, client: Client
) -> None:
    server.answers = [[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]]
    server.close_after_answer = True  # closes after answering, without saying so
    assert await (await client.request("GET", server.target, headers={})).read() == b"ok"
    server.answers = [[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]]
    assert await (await client.request("GET", server.target, headers={})).read() == b"ok"
    assert server.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    ],
    ids=["not-http", "bad-length", "bad-header"],
)
async def test_a_server_that_does_not_speak_http_is_an_error(
    server: Server, client: Client, answer: bytes
) -> None:
    server.answers = [[answer]]
    with pytest.raises(UpstreamError):
        await client.request("GET", server.target, headers={})


async def test_a_body_cut_short_is_an_error(server: Server, client: Client) -> None:
    server.answers = [[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"]]
    server.close_after_answer = True
    response = await client.request("GET", server.target, headers={})
    with pytest.raises(UpstreamError):
        await response.read()


async def test_nothing_listening_is_an_error(client: Client) -> None:
    with pytest.raises(UpstreamError, match="cannot connect"):
        await client.request("GET", Target.parse("http://127.0.0.1:9/"), headers={})


def test_only_plain_http_targets_are_accepted() -> None:
    assert Target.parse("http://pod-0.svc:8080/mcp?x=1") == Target(
        "pod-0.svc", 8080, "/mcp?x=1", "pod-0.svc:8080"
    )
    with pytest.raises(ValueError, match="http://"):
        Target.parse("https://example.com/mcp")


async def test_header_injection_is_refused(server: Server, client: Client) -> None:
    with pytest.raises(ValueError, match="line break"):
        await client.request("GET", server.target, headers={"X-Evil": "a\r\nInjected: yes"})
