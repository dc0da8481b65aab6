"""Bounded queues of server messages on their way to one client stream.

An `Exchange` is one client request in flight: the messages that belong on that request's
response stream (progress, logs, server-to-client requests) and, last, the response itself.
The HTTP layer waits on it and decides late whether to answer with plain JSON (nothing came
before the response: the fast path) or to switch to an SSE stream.

A `Mailbox` is a long-lived stream: a legacy session's GET stream or HTTP+SSE stream, or a
modern `subscriptions/listen` stream. It carries what is not tied to one request (list-changed
notifications, resource updates, logs, server requests outside a request's stream).

Both are bounded, in messages (`capacity`) and in bytes (`max_bytes`, the messages' JSON
size; a message is always taken into an empty queue, so one larger than the bound still goes
through on its own). A client that does not read its stream loses messages (an exchange drops
interim ones and keeps the response) or its stream (a full mailbox is closed, and the client
reconnects); either way a slow client never grows the proxy's memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from moorage_proxyrunner.protocol.jsonrpc import Json, encode

DEFAULT_CAPACITY = 1024
"""Messages queued per stream before a slow reader starts losing them."""
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
"""Bytes queued per stream before a slow reader starts losing them."""


def json_size(message: Json) -> int:
    return len(encode(message))


class _Queue:
    __slots__ = (
        "_bytes",
        "_closed",
        "_items",
        "_size",
        "_waiter",
        "capacity",
        "dropped",
        "max_bytes",
    )

    def __init__(
        self, capacity: int, max_bytes: int, size: Callable[[Json], int] = json_size
    ) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.dropped = 0
        self._items: deque[Json] = deque()
        self._size = size
        self._bytes = 0
        """Size of `_items` as measured by `_size`."""
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def _append_within_bounds(self, message: Json) -> bool:
        """Queue `message` if both bounds allow it (an empty queue takes anything)."""
        if self._items:
            if len(self._items) >= self.capacity:
                return False
            size = self._size(message)
            if self._bytes + size > self.max_bytes:
                return False
        else:
            size = self._size(message)
        self._items.append(message)
        self._bytes += size
        self._wake()
        return True

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _ready(self) -> bool:
        return bool(self._items) or self._closed

    async def wait(self, timeout: float | None) -> bool:
        """Wait until something can be taken or the stream ended; False on timeout."""
        if self._ready():
            return True
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._waiter
        except TimeoutError:
            return False
        finally:
            self._waiter = None
        return True

    def take(self) -> list[Json]:
        """Everything queued, oldest first."""
        items = list(self._items)
        self._items.clear()
        self._bytes = 0
        return items

    @property
    def pending(self) -> int:
        return len(self._items)


class Exchange(_Queue):
    """One request's response stream; `final` is set exactly once by `finish`.

    `streams`: whether the client can take messages before the response (it accepts
    `text/event-stream`). When it cannot, the bridge routes what would have gone here to the
    client's mailbox instead.
    """

    __slots__ = ("final", "streams")

    def __init__(
        self,
        *,
        streams: bool = True,
        capacity: int = DEFAULT_CAPACITY,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        super().__init__(capacity, max_bytes)
        self.streams = streams
        self.final: Json | None = None

    @property
    def finished(self) -> bool:
        return self.final is not None

    def push(self, message: Json) -> bool:
        """Queue an interim message; False when it was dropped (finished, or full)."""
        if self.final is not None or self._closed:
            return False
        if not self._append_within_bounds(message):
            self.dropped += 1
            return False
        return True

    def finish(self, message: Json) -> None:
        if self.final is None:
            self.final = message
            self._wake()

    def _ready(self) -> bool:
        return bool(self._items) or self.final is not None or self._closed

    def abandon(self) -> None:
        """The client went away: accept nothing more."""
        self._closed = True
        self._items.clear()
        self._bytes = 0
        self._wake()


class Mailbox(_Queue):
    """A long-lived stream; once closed it stays closed and accepts nothing."""

    __slots__ = ("on_overflow", "overflowed")

    def __init__(
        self,
        *,
        capacity: int = DEFAULT_CAPACITY,
        max_bytes: int = DEFAULT_MAX_BYTES,
        size: Callable[[Json], int] = json_size,
    ) -> None:
        super().__init__(capacity, max_bytes, size)
        self.overflowed = False
        self.on_overflow: Callable[[], None] | None = None
        """Called once when the mailbox closes for overflowing: whoever writes its stream
        may be stuck on the slow reader, and must drop the connection to notice."""

    @property
    def closed(self) -> bool:
        return self._closed

    def push(self, message: Json) -> bool:
        if self._closed:
            return False
        if not self._append_within_bounds(message):
            # The reader is not keeping up: end its stream rather than grow without bound.
            self.dropped += 1
            self.overflowed = True
            self.close()
            if self.on_overflow is not None:
                self.on_overflow()
            return False
        return True

    def close(self) -> None:
        self._closed = True
        self._wake()
