"""A TCP relay in front of the apiserver, for tests that break the network on purpose.

`TcpRelay` forwards 127.0.0.1:<port> to the apiserver byte for byte, so TLS stays end to end
(the apiserver's certificate has the SAN 127.0.0.1). The test controls the network through it:
`drop()` cuts every open connection, `hold()` makes new connections wait before they reach the
apiserver (until `release()`), `freeze()` stops forwarding on the open connections without
closing them (a half-open connection, as after a silent network partition).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import yaml


class _Link:
    """One relayed connection: client side, server side, and the two pumps between them."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.server: asyncio.StreamWriter | None = None
        self.pumps: list[asyncio.Task[None]] = []
        self.flowing = asyncio.Event()
        self.flowing.set()

    def abort(self) -> None:
        for writer in (self.client, self.server):
            if writer is not None:
                writer.transport.abort()
        for pump in self.pumps:
            pump.cancel()


class TcpRelay:
    """Forwards 127.0.0.1:`port` to `target` and lets the test break the network."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.connections = 0
        """Connections accepted so far."""
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._open = asyncio.Event()
        self._open.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def drop(self) -> None:
        """Cut every open connection (both sides see a reset)."""
        for link in list(self._links):
            link.abort()
        self._links.clear()

    def hold(self) -> None:
        """New connections are accepted but wait before reaching the apiserver."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def freeze(self) -> None:
        """Stop forwarding on every open connection, leaving it open."""
        for link in self._links:
            link.flowing.clear()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.release()
        self.drop()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        link = _Link(writer)
        self._links.add(link)
        try:
            await self._open.wait()
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            link.server = up_writer
            link.pumps = [
                asyncio.create_task(self._pump(reader, up_writer, link)),
                asyncio.create_task(self._pump(up_reader, writer, link)),
            ]
            await asyncio.gather(*link.pumps, return_exceptions=True)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            link.abort()
            self._links.discard(link)
            self._handlers.discard(task)

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, link: _Link) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = await src.read(65536)
                await link.flowing.wait()
                if not data:
                    dst.close()
                    return
                dst.write(data)
                await dst.drain()


def write_token_kubeconfig(path: Path, *, server: str, ca_file: Path, token: str) -> Path:
    """A kubeconfig that authenticates with a bearer token."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": server, "certificate-authority": str(ca_file)}}
        ],
        "users": [{"name": "token", "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "token"}}],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(config))
    return path
