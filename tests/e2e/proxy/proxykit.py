"""Helpers for the proxy runner's end-to-end tests: real MCP servers, the proxy in-process.

`running_proxy` starts `run_local` on a free loopback port in the test's event loop and waits
until `/health` says the backend is connected; `serving_toolbox` starts the toolbox MCP server
over HTTP (streamable or SSE) as a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from testkit.waiting import eventually

from moorage_dev.ports import free_port
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.protocol.sse import Event, EventParser
from moorage_proxyrunner.startup.local import LocalBackend, LocalConfig, run_local

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# The toolbox server is also the streamable-HTTP example's image, so it lives with that image.
TOOLBOX_SERVER = Path(__file__).resolve().parents[3] / "docker" / "examples" / "mcp-server-toolbox"
TOOLBOX = (sys.executable, str(TOOLBOX_SERVER / "toolbox_server.py"))
CONFORMANCE_FIXTURE = (sys.executable, str(FIXTURES / "conformance_server.py"))
TIME_SERVER = (str(Path(sys.executable).parent / "mcp-server-time"), "--local-timezone", "UTC")


REPO = Path(__file__).resolve().parents[3]
CONFORMANCE_VERSION = "0.2.0-alpha.12"
"""The conformance suite every verdict in these tests was measured with."""


def node_tools() -> Path:
    """The cache `scripts/node.sh` fills (Node 22, the conformance suite, the "everything"
    server), installing it once; skips the test without npm or a cache."""
    cached = Path.home() / ".cache" / "moorage" / "node"
    if shutil.which("npm") is None and not cached.exists():
        pytest.skip("npm is not available to install Node.js 22 and the MCP test servers")
    done = subprocess.run(
        [str(REPO / "scripts" / "node.sh")],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "MOORAGE_CONFORMANCE_VERSION": CONFORMANCE_VERSION},
    )
    if done.returncode != 0:
        pytest.skip(
            f"cannot install Node.js and the MCP test servers: {done.stderr.strip()[-300:]}"
        )
    return Path(done.stdout.strip().splitlines()[-1])


def node_binary(root: Path) -> str:
    return str(next((root / "node_modules").glob("node-linux-*/bin/node")))


JSON = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def initialize_request(request_id: int | str = 1) -> dict[str, Any]:
    """A legacy `initialize` request of a raw client."""
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"},
        },
    }


async def initialize(http: aiohttp.ClientSession, mcp_url: str) -> str:
    """Open a legacy session with raw HTTP; its `Mcp-Session-Id`."""
    body = initialize_request()
    async with http.post(mcp_url, json=body, headers=JSON) as resp:
        assert resp.status == 200
        session_id = resp.headers["Mcp-Session-Id"]
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    async with http.post(
        mcp_url, json=note, headers={**JSON, "Mcp-Session-Id": session_id}
    ) as resp:
        assert resp.status == 202
    return session_id


async def next_sse_events(resp: aiohttp.ClientResponse, parser: EventParser) -> list[Event]:
    """The next complete events on an SSE response (at least one)."""
    while True:
        chunk = await asyncio.wait_for(resp.content.readany(), timeout=10)
        assert chunk, "the stream ended"
        events = parser.feed(chunk)
        if events:
            return events


def call(tool: str, arguments: dict[str, Any], request_id: int = 7) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }


@dataclass
class Proxy:
    base: str
    registry: CollectorRegistry
    stop: asyncio.Event
    task: asyncio.Task[None]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mcp(self) -> str:
        return f"{self.base}/mcp"

    @property
    def sse(self) -> str:
        return f"{self.base}/sse"

    def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        value = self.registry.get_sample_value(name, dict(labels or {}))
        return 0.0 if value is None else value


async def is_healthy(url: str) -> bool:
    """`/health` answers 200 (False while it refuses connections or says not ready)."""
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            return resp.status == 200
    except aiohttp.ClientConnectionError:
        return False


async def scraped(base: str, sample: str) -> float | None:
    """One sample's value from a proxy's `/metrics` (None when absent or unreachable)."""
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as resp:
            text = await resp.text()
    except aiohttp.ClientConnectionError:
        return None
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    return None


@contextlib.asynccontextmanager
async def running_proxy(
    backend: LocalBackend, *, config: LocalConfig | None = None, **settings: Any
) -> AsyncIterator[Proxy]:
    """The proxy in front of `backend`; `config`: a RunConfig file it follows (`--config`)."""
    registry = CollectorRegistry()
    stop = asyncio.Event()
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run_local(
            backend,
            ProxyRunnerSettings(port=0, **settings),
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
    proxy = Proxy(f"http://127.0.0.1:{port.result()}", registry, stop, task)
    try:
        await eventually(lambda: is_healthy(f"{proxy.base}/health"), message="proxy healthy")
        yield proxy
    finally:
        stop.set()
        await task


def stdio_backend(command: tuple[str, ...] = (*TOOLBOX, "stdio")) -> LocalBackend:
    return LocalBackend(transport="stdio", command=command)


async def _accepts_connections(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


@contextlib.asynccontextmanager
async def serving_toolbox(
    transport: str = "http", command: tuple[str, ...] = TOOLBOX
) -> AsyncIterator[str]:
    """The toolbox (or another fixture) on HTTP; yields its MCP URL (`/mcp` or `/sse`)."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(*command, transport, "--port", str(port))
    try:
        await eventually(lambda: _accepts_connections(port), message="fixture server listening")
        path = "/sse" if transport == "sse" else "/mcp"
        yield f"http://127.0.0.1:{port}{path}"
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()
