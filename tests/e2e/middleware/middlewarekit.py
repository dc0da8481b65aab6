"""Helpers for the middleware's end-to-end tests: the proxy in-process in front of the real
`mcp-server-time` (stdio), real SDK clients carrying bearer tokens.

`local_proxy` runs `run_local` (the `--local` path, with an optional `--config` file);
`assembled_proxy` builds the same app from the same parts but hands the middleware a JWKS cache
of the test's choosing (one that may refresh at once, for key rotation).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from prometheus_client import CollectorRegistry
from testkit.waiting import eventually

from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.front.app import make_app
from moorage_proxyrunner.front.metrics import ProxyMetrics
from moorage_proxyrunner.policy.chain import Middleware
from moorage_proxyrunner.policy.jwks import JwksCache
from moorage_proxyrunner.startup.assembly import build_endpoints
from moorage_proxyrunner.startup.local import LocalBackend, LocalConfig, run_local

TIME_SERVER = (str(Path(sys.executable).parent / "mcp-server-time"), "--local-timezone", "UTC")
TIME_BACKEND = LocalBackend(transport="stdio", command=TIME_SERVER)


@dataclass
class Proxy:
    base: str
    registry: CollectorRegistry

    @property
    def mcp(self) -> str:
        return f"{self.base}/mcp"

    @property
    def sse(self) -> str:
        return f"{self.base}/sse"

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.registry.get_sample_value(name, labels or {}) or 0.0


async def _healthy(base: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{base}/health") as resp:
            return resp.status == 200
    except aiohttp.ClientConnectionError:
        return False


@contextlib.asynccontextmanager
async def local_proxy(
    settings: ProxyRunnerSettings,
    *,
    config: LocalConfig | None = None,
    backend: LocalBackend = TIME_BACKEND,
) -> AsyncIterator[Proxy]:
    registry = CollectorRegistry()
    stop = asyncio.Event()
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run_local(
            backend,
            settings,
            stop=stop,
            registry=registry,
            on_listening=port.set_result,
            handle_signals=False,
            config=config,
        )
    )
    done, _ = await asyncio.wait({port, task}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    proxy = Proxy(f"http://127.0.0.1:{port.result()}", registry)
    try:
        await eventually(lambda: _healthy(proxy.base), message="proxy healthy")
        yield proxy
    finally:
        stop.set()
        await task


@contextlib.asynccontextmanager
async def assembled_proxy(
    settings: ProxyRunnerSettings, *, keys: JwksCache, backend: LocalBackend = TIME_BACKEND
) -> AsyncIterator[Proxy]:
    registry = CollectorRegistry()
    middleware = Middleware(settings, registry=registry, keys=keys)
    endpoints = build_endpoints(
        backend.resolve(),
        settings=settings,
        metrics=ProxyMetrics(registry),
        pipeline=middleware.pipeline,
    )
    app = make_app(settings, endpoints=endpoints, registry=registry)
    middleware.install(app)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    proxy = Proxy(f"http://127.0.0.1:{port}", registry)
    try:
        await eventually(lambda: _healthy(proxy.base), message="proxy healthy")
        yield proxy
    finally:
        await endpoints.close_streams()
        await runner.cleanup()


@contextlib.asynccontextmanager
async def bearer_client(url: str, token: str | None, **options: Any) -> AsyncIterator[Client]:
    """An SDK client on streamable HTTP sending `Authorization: Bearer <token>`."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with create_mcp_http_client(headers=headers) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, **options) as client:
            yield client


@contextlib.asynccontextmanager
async def bearer_sse_client(url: str, token: str, **options: Any) -> AsyncIterator[Client]:
    """An SDK client on legacy HTTP+SSE sending the bearer token on every request."""
    transport = sse_client(url, headers={"Authorization": f"Bearer {token}"})
    async with Client(transport, mode="legacy", **options) as client:
        yield client


INITIALIZE: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
"""A raw legacy `initialize` request body."""


async def read_endpoint(stream: aiohttp.ClientResponse, base: str) -> str:
    """The `/messages` URL (on `base`) from the `endpoint` event of a legacy SSE stream."""
    endpoint = ""
    async for raw in stream.content:
        line = raw.decode().strip()
        if line.startswith("data:"):
            endpoint = line[5:].strip()
            break
    assert "session_id=" in endpoint
    return base + endpoint[endpoint.index("/messages") :]


def tool_names(result: Any) -> list[str]:
    return [t.name for t in result.tools]
