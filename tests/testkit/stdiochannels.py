"""An in-memory stdio channel: the proxy's end of a pipe whose server side a test plays."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from moorage_proxyrunner.backends.stdio.channels import ChannelClosed


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


class ScriptedServer:
    """A channel factory for a `StdioBridge`: each channel answers `initialize` (unless
    `serve_initialize` is off) and leaves the rest of the server's side to the test."""

    def __init__(self) -> None:
        self.channels: list[MemoryChannel] = []
        self.serve_initialize = True

    async def factory(self) -> MemoryChannel:
        channel = MemoryChannel()
        self.channels.append(channel)
        if self.serve_initialize:
            asyncio.get_running_loop().create_task(self._initialize(channel), name="scripted-init")
        return channel

    async def _initialize(self, channel: MemoryChannel) -> None:
        init = await channel.read("initialize")
        channel.write({"jsonrpc": "2.0", "id": init["id"], "result": INIT_RESULT})
        await channel.read("notifications/initialized")

    @property
    def server(self) -> MemoryChannel:
        return self.channels[-1]
