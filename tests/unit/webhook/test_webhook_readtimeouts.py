"""A client trickling its AdmissionReview (headers or body) over TLS is cut at the webhook's
read deadlines; one that sends promptly is answered."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from moorage_core.tls import build_ca, build_leaf, write_pair
from moorage_webhook.server import WebhookServer
from moorage_webhook.settings import WebhookSettings


@pytest_asyncio.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[WebhookServer, ssl.SSLContext]]:
    ca = build_ca(common_name="test-ca")
    write_pair(
        build_leaf(ca, common_name="moorage-webhook", hosts=["127.0.0.1", "localhost"]), tmp_path
    )
    settings = WebhookSettings(
        cert_dir=tmp_path,
        bind=("127.0.0.1", 0),
        metrics_bind=("127.0.0.1", 0),
        header_timeout=0.3,
        body_timeout=0.3,
    )
    server = WebhookServer(settings)
    await server.start()
    try:
        yield server, ssl.create_default_context(cadata=ca.cert_pem.decode())
    finally:
        await server.stop()


HEAD = b"POST /validate/mcpserver HTTP/1.1\r\nHost: localhost\r\n"


@pytest.mark.parametrize(
    ("head", "tail"),
    [
        (HEAD, b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"),
        (HEAD + b"Content-Type: application/json\r\nContent-Length: 40\r\n\r\n", b"{" + b" " * 39),
    ],
    ids=["headers", "body"],
)
async def test_a_trickling_client_is_cut(
    served: tuple[WebhookServer, ssl.SSLContext], head: bytes, tail: bytes
) -> None:
    server, context = served
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.port, ssl=context, server_hostname="localhost"
    )
    writer.write(head)
    cut = False
    try:
        for byte in tail:
            writer.write(bytes([byte]))
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                if await asyncio.wait_for(reader.read(1024), timeout=0.1) == b"":
                    cut = True
                    break
    except ConnectionError:
        cut = True
    finally:
        writer.close()
    assert cut, "the trickling connection was not cut"


async def test_a_prompt_client_is_answered(served: tuple[WebhookServer, ssl.SSLContext]) -> None:
    server, context = served
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.port, ssl=context, server_hostname="localhost"
    )
    try:
        writer.write(HEAD + b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), timeout=10)
        assert status.startswith(b"HTTP/1.1 ")
    finally:
        writer.close()
