"""A small HTTP/1.1 client for the proxy's hop to an MCP server over HTTP.

The reverse proxy makes one upstream request per client request; a general-purpose client
(cookies, redirects, tracing, URL normalisation, proxies) costs more CPU on that hop than the
rest of the proxy together. This client does only what the hop needs: keep-alive connections
pooled per target, a request written in one call, the response's status line and headers
parsed once, and the body read by `Content-Length`, chunked encoding or until close — whole, or
chunk by chunk as it arrives for streams.

Plain `http://` on trusted networks (a pod behind a headless Service, a local server) only;
anything else is refused at construction. A client for a remote MCP server
(`backends.remote.client`) also takes `https://` (TLS with the system's trust store, through
`Client.target`) and checks where it connects (`Client.open_stream`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

MAX_HEADER_BYTES: Final = 64 * 1024
MAX_CHUNK_LINE: Final = 1024
_HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "host",
    }
)


class UpstreamError(Exception):
    """The upstream connection failed or spoke something that is not HTTP/1.1."""


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    path: str
    authority: str
    tls: bool = False

    @classmethod
    def parse(cls, url: str, *, tls_allowed: bool = False) -> Target:
        parts = urlsplit(url)
        schemes = ("http", "https") if tls_allowed else ("http",)
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"{url!r}: the upstream must be an {' or '.join(schemes)}:// URL")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.hostname, port, path, parts.netloc, tls)


@dataclass(eq=False, slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def close(self) -> None:
        self.writer.close()


@dataclass(eq=False, slots=True)
class Response:
    """An upstream response; its body must be consumed (`read`, `chunks`) or `close`d.

    `headers` are keyed by lower-case name (the last value wins, as nothing the proxy reads
    repeats).
    """

    status: int
    headers: dict[str, str]
    _connection: _Connection | None
    _pool: Pool
    _length: int | None = None
    _chunked: bool = False
    _done: bool = False
    _reusable: bool = True
    _buffered: list[bytes] = field(default_factory=list)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, piece by piece as it arrives (chunked encoding removed)."""
        for piece in self._buffered:
            yield piece
        self._buffered.clear()
        while not self._done:
            piece = await self._next()
            if piece:
                yield piece

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.chunks()])

    async def first(self) -> bytes:
        """The first piece of the body (b"" when it is empty); it stays part of `chunks`."""
        if not self._buffered and not self._done:
            piece = await self._next()
            if piece:
                self._buffered.append(piece)
        return self._buffered[0] if self._buffered else b""

    @property
    def at_end(self) -> bool:
        return self._done and not self._buffered

    async def _next(self) -> bytes:
        connection = self._connection
        if connection is None or self._done:
            return b""
        reader = connection.reader
        try:
            if self._chunked:
                line = await reader.readuntil(b"\r\n")
                if len(line) > MAX_CHUNK_LINE:
                    raise UpstreamError("chunk size line too long")
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    # Trailers (rare) end with an empty line.
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    self._finish()
                    return b""
                data = await reader.readexactly(size + 2)
                return data[:-2]
            if self._length is not None:
                if self._length == 0:
                    self._finish()
                    return b""
                data = await reader.read(min(self._length, 256 * 1024))
                if not data:
                    raise UpstreamError("connection closed before the body ended")
                self._length -= len(data)
                if self._length == 0:
                    self._finish()
                return data
            data = await reader.read(256 * 1024)
            if not data:
                self._reusable = False
                self._finish()
            return data
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, OSError) as exc:
            self._reusable = False
            self._finish()
            raise UpstreamError(f"reading the response failed: {exc}") from exc

    def _finish(self) -> None:
        self._done = True
        connection, self._connection = self._connection, None
        if connection is not None:
            if self._reusable:
                self._pool.put(connection)
            else:
                connection.close()

    def close(self) -> None:
        """Abandon the body: the connection cannot be reused."""
        self._done = True
        self._buffered.clear()
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


class Pool:
    """Idle keep-alive connections to one target."""

    def __init__(self, target: Target, *, size: int = 64) -> None:
        self.target = target
        self.size = size
        self._idle: list[_Connection] = []

    def put(self, connection: _Connection) -> None:
        if len(self._idle) < self.size and not connection.writer.is_closing():
            self._idle.append(connection)
        else:
            connection.close()

    def take(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.writer.is_closing() and not connection.reader.at_eof():
                return connection
            connection.close()
        return None

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


class Client:
    """Requests to a fixed set of targets (one pool each)."""

    def __init__(self, *, connect_timeout: float = 10.0) -> None:
        self._connect_timeout = connect_timeout
        self._pools: dict[Target, Pool] = {}

    def target(self, url: str) -> Target:
        """The target at `url`, as this client can reach it."""
        return Target.parse(url)

    def _pool(self, target: Target) -> Pool:
        pool = self._pools.get(target)
        if pool is None:
            pool = self._pools[target] = Pool(target)
        return pool

    async def request(
        self,
        method: str,
        target: Target,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        path: str | None = None,
    ) -> Response:
        pool = self._pool(target)
        head = _request_head(method, path or target.path, target.authority, headers, body)
        payload = head + body if body else head
        reused = pool.take()
        if reused is not None:
            try:
                return await self._exchange(pool, reused, payload, method)
            except UpstreamError:
                # An idle connection the server closed meanwhile: retry once on a new one
                # (only a request that got no answer at all reaches here).
                pass
        connection = await self._connect(target)
        return await self._exchange(pool, connection, payload, method)

    async def open_stream(
        self, target: Target
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A new connection to `target` (TLS for https)."""
        return await asyncio.open_connection(
            target.host,
            target.port,
            limit=MAX_HEADER_BYTES,
            ssl=_tls_context() if target.tls else None,
        )

    async def _connect(self, target: Target) -> _Connection:
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await self.open_stream(target)
        except (OSError, TimeoutError) as exc:
            raise UpstreamError(f"cannot connect to {target.authority}: {exc}") from exc
        return _Connection(reader, writer)

    async def _exchange(
        self, pool: Pool, connection: _Connection, payload: bytes, method: str
    ) -> Response:
        try:
            connection.writer.write(payload)
            await connection.writer.drain()
            head = await connection.reader.readuntil(b"\r\n\r\n")
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            connection.close()
            raise UpstreamError(f"no response from {pool.target.authority}: {exc}") from exc
        except asyncio.CancelledError:
            # The caller gave up (the request timed out): the server must see the request end.
            connection.close()
            raise
        status, headers = _parse_head(head)
        response = Response(status, headers, connection, pool)
        if headers.get("connection", "").lower() == "close":
            response._reusable = False
        encoding = headers.get("transfer-encoding", "").lower()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            response._length = 0
        elif "chunked" in encoding:
            response._chunked = True
        elif "content-length" in headers:
            try:
                response._length = int(headers["content-length"])
            except ValueError as exc:
                connection.close()
                raise UpstreamError("bad Content-Length") from exc
        else:
            response._reusable = False
        if response._length == 0:
            response._finish()
        return response

    async def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        with contextlib.suppress(Exception):
            await asyncio.sleep(0)


_TLS: list[ssl.SSLContext] = []


def _tls_context() -> ssl.SSLContext:
    """One default client context per process (building one reads the trust store)."""
    if not _TLS:
        _TLS.append(ssl.create_default_context())
    return _TLS[0]


def _request_head(
    method: str, path: str, authority: str, headers: Mapping[str, str], body: bytes | None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {authority}"]
    for name, value in headers.items():
        if name.lower() in _HOP_BY_HOP or name.lower() == "content-length":
            continue
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"header {name!r} carries a line break")
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body) if body else 0}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    text = head.decode("latin-1")
    status_line, _, rest = text.partition("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise UpstreamError(f"not an HTTP/1.1 response: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for line in rest.split("\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise UpstreamError(f"malformed header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers
