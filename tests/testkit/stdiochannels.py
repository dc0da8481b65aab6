"""An in-memory stdio channel: the proxy's end of a pipe whose server side a test plays."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from moorage_proxyrunner.backends.stdio.bridge import StdioBridge
from moorage_proxyrunner.backends.stdio.channels import ChannelClosed
from moorage_proxyrunner.backends.stdio.peers import Peer
from moorage_proxyrunner.front.streams import Exchange


class MemoryChannel:
    """The proxy's end of an in-memory pipe; the test plays the server on the other end."""

    def __init__(self) -> None:
        self.to_server: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.to_proxy: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = False

    async def send(self, line: bytes) -> None:
        if self.closed:
            raise ChannelClosed("closed")
        self.to_server.put_nowait(json.loads(line))

    async def receive(self) -> bytes:
        line = await self.to_proxy.get()
        if line is None:
            raise ChannelClosed("process exited with code 1")
        return line

    async def close(self) -> None:
        self.closed = True
        self.to_proxy.put_nowait(None)

    # the server's side
    def write(self, message: dict[str, Any]) -> None:
        self.to_proxy.put_nowait(json.dumps(message).encode())

    async def read(self, method: str | None = None) -> dict[str, Any]:
        """The next message the server receives (skipping others when `method` is given)."""
        while True:
            message = await asyncio.wait_for(self.to_server.get(), timeout=10)
            if method is None or message.get("method") == method:
                return message


INIT_RESULT = {
    "protocolVersion": "2025-11-25",
    "capabilities": {
        "tools": {"listChanged": True},
        "logging": {},
        "resources": {"subscribe": True},
    },
    "serverInfo": {"name": "scripted", "version": "1"},
}


DISCOVER_RESULT = {
    "supportedVersions": ["2026-07-28"],
    "capabilities": {
        "tools": {"listChanged": True},
        "logging": {},
        "resources": {"subscribe": True},
    },
    "resultType": "complete",
    "ttlMs": 0,
    "cacheScope": "private",
    "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "scripted", "version": "1"}},
}


class ScriptedServer:
    """A channel factory for a `StdioBridge`: each channel answers `initialize` (unless
    `serve_initialize` is off), refusing a `server/discover` probe before it, or, `modern`,
    answers the probe as a dual-era server does; the rest of the server's side is the test's."""

    def __init__(self, *, modern: bool = False) -> None:
        self.channels: list[MemoryChannel] = []
        self.serve_initialize = True
        self.modern = modern
        """Answer the probe as a dual-era server does (the process then runs 2026-07-28)."""

    async def factory(self) -> MemoryChannel:
        channel = MemoryChannel()
        self.channels.append(channel)
        if self.serve_initialize:
            asyncio.get_running_loop().create_task(self._initialize(channel), name="scripted-init")
        return channel

    async def _initialize(self, channel: MemoryChannel) -> None:
        first = await channel.read()
        if first.get("method") == "server/discover":
            if self.modern:
                channel.write({"jsonrpc": "2.0", "id": first["id"], "result": DISCOVER_RESULT})
                return
            # A handshake-era server refuses the proxy's era probe, as real ones do.
            error = {"code": -32601, "message": "Method not found"}
            channel.write({"jsonrpc": "2.0", "id": first["id"], "error": error})
            first = await channel.read("initialize")
        assert first.get("method") == "initialize", first
        channel.write({"jsonrpc": "2.0", "id": first["id"], "result": INIT_RESULT})
        await channel.read("notifications/initialized")

    @property
    def server(self) -> MemoryChannel:
        return self.channels[-1]


class BridgeHarness(ScriptedServer):
    """A `StdioBridge` over scripted servers, with the client side's two moves."""

    def __init__(self, *, modern: bool = False, **bridge: Any) -> None:
        super().__init__(modern=modern)
        self.bridge = StdioBridge(self.factory, backoff_initial=0.01, backoff_max=0.05, **bridge)

    def peer(self, key: str, **fields: Any) -> Peer:
        peer = Peer(key=key, **fields)
        self.bridge.attach(peer)
        return peer

    async def send(
        self, peer: Peer, request_id: Any, method: str, params: dict[str, Any] | None = None
    ) -> Exchange:
        exchange = Exchange()
        message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}
        await self.bridge.request(peer, message, exchange)
        return exchange
