"""Writing MCP answers over HTTP: JSON bodies, SSE streams, and request bodies read safely.

`ResponseStream` answers one request: it waits on the request's `Exchange` and answers with a
plain JSON body when the response is all there is (the fast path), or switches to an SSE
stream as soon as something must go out first (progress, a log line, a server request) or the
request has been quiet for a keep-alive interval. Every event is written as it comes: nothing
is buffered on our side, and the headers tell intermediaries not to buffer either.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from aiohttp import web

from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.front.metrics import ProxyMetrics
from moorage_proxyrunner.front.replaying import Journal, ReplayLog
from moorage_proxyrunner.front.streams import Exchange, Mailbox
from moorage_proxyrunner.protocol import eras
from moorage_proxyrunner.protocol.jsonrpc import (
    INVALID_REQUEST,
    Json,
    Kind,
    Message,
    Rejection,
    RequestId,
    encode,
    error_response,
    parse_client_message,
)
from moorage_proxyrunner.protocol.sse import (
    KEEPALIVE,
    SSE_HEADERS,
    format_event,
    prefers_event_stream,
)

log = structlog.get_logger(__name__)

JSON_TYPE = "application/json"


class BodyTooLarge(Exception):
    pass


def json_body(
    message: Json, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=encode(message), status=status, content_type=JSON_TYPE, headers=headers
    )


def rpc_error(
    status: int,
    code: int,
    message: str,
    *,
    request_id: str | int | None = None,
    data: object = None,
) -> web.Response:
    return json_body(error_response(request_id, code, message, data), status=status)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes without reading them all."""
    length = request.content_length
    if length is not None:
        if length > limit:
            raise BodyTooLarge
        return await request.read()  # the length is known and allowed: one read
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def accepts(request: web.Request) -> tuple[bool, bool]:
    """(accepts JSON, accepts SSE). A missing Accept header accepts anything."""
    accept = request.headers.get("Accept", "")
    if not accept or "*/*" in accept:
        return True, True
    return (JSON_TYPE in accept or "application/*" in accept), "text/event-stream" in accept


def is_json_content(request: web.Request) -> bool:
    return request.content_type == JSON_TYPE


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an incoming POST is turned away before any MCP processing, and with what status."""

    status: int
    code: int
    message: str
    request_id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class Intake:
    """An accepted POST: the message, whether the client takes SSE and whether it prefers it
    (ranks it above JSON in `Accept`).

    The client's bytes are not kept: what goes on is the parsed message, re-encoded."""

    message: Message
    wants_sse: bool
    prefers_sse: bool = False


def check_client_message(body: bytes, *, modern: bool) -> Message | Refusal:
    """A client's message as the proxy will authorise, audit and forward it, or the 400 refusal:
    not strict JSON-RPC (`parse_client_message`), or a notification clients do not send."""
    parsed = parse_client_message(body)
    if isinstance(parsed, Rejection):
        return Refusal(400, parsed.code, parsed.message, parsed.id)
    if parsed.kind is Kind.NOTIFICATION:
        refusal = eras.notification_refusal(parsed.method, modern=modern)
        if refusal is not None:
            return Refusal(400, refusal.code, refusal.message)
    return parsed


async def read_message(
    request: web.Request, *, limit: int, modern: bool, check_accept: bool = True
) -> Intake | Refusal:
    """Content type (415), Accept (406), size (413) and the message itself (400, see
    `check_client_message`) of a POST."""
    if not is_json_content(request):
        return Refusal(415, INVALID_REQUEST, "Content-Type must be application/json")
    wants_json, wants_sse = accepts(request)
    if check_accept and not wants_json and not wants_sse:
        return Refusal(
            406, INVALID_REQUEST, "Accept must include application/json and text/event-stream"
        )
    try:
        body = await read_body(request, limit)
    except BodyTooLarge:
        return Refusal(413, INVALID_REQUEST, f"Request body exceeds {limit} bytes")
    parsed = check_client_message(body, modern=modern)
    if isinstance(parsed, Refusal):
        return parsed
    prefers = wants_sse and prefers_event_stream(request.headers.get("Accept", ""))
    return Intake(parsed, wants_sse, prefers)


def endpoint_url(request: web.Request, settings: ProxyRunnerSettings, session_id: str) -> str:
    """The URL a legacy SSE client must POST to, as it sees the proxy.

    Behind an ingress the path gets `endpoint_prefix` (or, when trusted, `X-Forwarded-Prefix`);
    with trusted `X-Forwarded-Host` the URL is absolute.
    """
    prefix = settings.endpoint_prefix.rstrip("/")
    if settings.trust_proxy_headers:
        prefix = request.headers.get("X-Forwarded-Prefix", "").rstrip("/") or prefix
    path = f"{prefix}/messages?session_id={session_id}"
    host = request.headers.get("X-Forwarded-Host") if settings.trust_proxy_headers else None
    if host:
        scheme = request.headers.get("X-Forwarded-Proto", "http").split(",")[0].strip()
        return f"{scheme}://{host.split(',')[0].strip()}{path}"
    return path


class Refusing:
    """Mixin for endpoints: answer a request turned away before the backend, and count it."""

    metrics: ProxyMetrics

    def refuse(self, refusal: Refusal, started: float) -> web.Response:
        return self.reject(
            refusal.status, refusal.code, refusal.message, started, request_id=refusal.request_id
        )

    def reject(
        self,
        status: int,
        code: int,
        message: str,
        started: float,
        *,
        method: str = "unknown",
        request_id: RequestId | None = None,
        data: object = None,
    ) -> web.Response:
        self.metrics.observe(method, str(status), time.perf_counter() - started)
        return rpc_error(status, code, message, request_id=request_id, data=data)


class ResponseStream:
    """One request's answer on the wire; see the module docstring.

    `eager`: answer with an SSE stream even when nothing precedes the response (the client
    ranked `text/event-stream` first), as an MCP server does for such a client. `replay`: the
    session's log (`replaying`); once the answer is a stream, every event is recorded there
    under an id before it is written, so a client that loses the stream can resume it.
    """

    def __init__(
        self,
        request: web.Request,
        exchange: Exchange,
        *,
        keepalive: float,
        headers: dict[str, str] | None = None,
        eager: bool = False,
        replay: ReplayLog | None = None,
        request_id: RequestId | None = None,
    ) -> None:
        self.request = request
        self.request_id = request_id
        self.exchange = exchange
        self.keepalive = keepalive
        self.headers = headers
        self.eager = eager
        self.replay = replay
        self.journal: Journal | None = None
        self.response: web.StreamResponse | None = None

    @property
    def committed(self) -> bool:
        return self.response is not None

    async def _commit(self) -> web.StreamResponse:
        if self.response is None:
            if self.replay is not None:
                stream = self.replay.open_stream(request_id=self.request_id)
                self.journal = Journal(self.replay, stream)
            response = web.StreamResponse(
                status=200, headers={**SSE_HEADERS, **(self.headers or {})}
            )
            await response.prepare(self.request)
            self.response = response
        return self.response

    def _events(self, items: list[Json], *, final: bool = False) -> bytes:
        """The SSE framing of `items`, each recorded first (all of them before any is written,
        so that none is lost from the log when the write fails); `final`: the response."""
        journal = self.journal
        frames = []
        for item in items:
            data = encode(item)
            event_id = journal.record(data, final=final) if journal is not None else None
            frames.append(format_event(data, event_id=event_id))
        return b"".join(frames)

    async def pump(self) -> Json:
        """Stream interim messages until the response arrives; return the response."""
        exchange = self.exchange
        timeout = self.keepalive if exchange.streams else None
        if self.eager:
            await self._commit()
        while True:
            ready = await exchange.wait(timeout)
            if not ready:
                response = await self._commit()
                await response.write(KEEPALIVE)
                continue
            items = exchange.take()
            if items:
                response = await self._commit()
                await response.write(self._events(items))
            final = exchange.final
            if final is not None:
                return final

    async def finish(self, message: Json, *, status: int = 200) -> web.StreamResponse:
        if self.response is None:
            return json_body(message, status=status, headers=self.headers)
        try:
            await self.response.write(self._events([message], final=True))
        finally:
            if self.journal is not None:
                self.journal.close()
        await self.response.write_eof()
        return self.response


async def replay_stream(
    request: web.Request,
    log: ReplayLog,
    *,
    stream: int,
    after: int,
    keepalive: float,
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Resume a request's stream: its events after sequence `after`, then the ones still to
    come, until the request is answered."""
    response = web.StreamResponse(status=200, headers={**SSE_HEADERS, **(headers or {})})
    await response.prepare(request)
    while True:
        generation = log.watch()
        for event in log.since(stream, after):
            await response.write(format_event(event.data, event_id=event.shown_id))
            after = event.sequence
        if not log.is_open(stream):
            break
        try:
            async with asyncio.timeout(keepalive):
                await generation.wait()
        except TimeoutError:
            await response.write(KEEPALIVE)
    await response.write_eof()
    return response


def connection_dropper(request: web.Request) -> Callable[[], None]:
    """A callback that aborts `request`'s connection (a stream stuck on a slow reader)."""

    def drop() -> None:
        transport = request.transport
        if transport is not None:
            log.info("slow_reader_dropped", path=request.path)
            transport.abort()

    return drop


async def stream_mailbox(
    request: web.Request,
    mailbox: Mailbox,
    *,
    keepalive: float,
    first: bytes = b"",
    headers: dict[str, str] | None = None,
    journal: Journal | None = None,
) -> web.StreamResponse:
    """Serve a long-lived SSE stream from `mailbox` until it closes or the client leaves;
    with a `journal`, each event is recorded under an id first (see `ResponseStream`).

    A mailbox that overflows drops the connection: the reader is too slow, and this handler
    may be stuck writing to it."""
    response = web.StreamResponse(status=200, headers={**SSE_HEADERS, **(headers or {})})
    mailbox.on_overflow = connection_dropper(request)
    await response.prepare(request)
    if first:
        await response.write(first)
    while True:
        ready = await mailbox.wait(keepalive)
        if not ready:
            await response.write(KEEPALIVE)
            continue
        frames = []
        for item in mailbox.take():
            data = encode(item)
            event_id = journal.record(data) if journal is not None else None
            frames.append(format_event(data, event_id=event_id))
        await response.write(b"".join(frames))
        # What was queued while that was written goes out too: a drain ends the stream right
        # after the last answer owed on it was queued.
        if mailbox.closed and not mailbox.pending:
            break
    return response
