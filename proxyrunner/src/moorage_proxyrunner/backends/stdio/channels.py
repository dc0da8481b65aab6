"""The seam between the stdio bridge and the thing that carries its lines.

The stdio bridge (one backend process shared by every client session) speaks newline-delimited
JSON-RPC over a `StdioChannel`. Locally the channel is a subprocess's pipes; in a cluster it is a
`pods/attach` websocket to container `mcp`. A `ChannelFactory` opens a fresh channel; the bridge
calls it again to restart (local) or re-attach (cluster) after the channel ends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

MAX_LINE_BYTES = 16 * 1024 * 1024
"""The longest stdout line we accept from an MCP server (spec §4.3)."""


class ChannelClosed(Exception):
    """The channel ended (process exited, websocket closed); `reason` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StdioChannel(Protocol):
    """One open connection to an MCP server's stdin/stdout."""

    async def send(self, line: bytes) -> None:
        """Write one message; `line` has no trailing newline (the channel adds it)."""

    async def receive(self) -> bytes:
        """The next stdout line without its newline; raises `ChannelClosed` at the end."""

    async def close(self) -> None:
        """End the channel (terminate the process / close the websocket); idempotent."""


ChannelFactory = Callable[[], Awaitable[StdioChannel]]
