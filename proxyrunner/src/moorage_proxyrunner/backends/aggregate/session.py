"""One MCP client session from the aggregator to one backend, over the reverse backend's client.

A `BackendSession` initialises lazily (the first request opens it) and speaks the handshake era:
`streamable-http` posts each message and reads the answer as JSON or as an SSE stream;
legacy `sse` keeps the backend's event stream open and posts to the `endpoint` it announced,
the answers coming back on the stream. Whatever the backend sends that is not the answer to one
of the aggregator's requests (progress, log messages, list changes, its own requests for
elicitation, sampling or roots) is handed to `deliver`, tagged with nothing: progress tokens and
request ids are the aggregator's to map. A session the backend forgot (404) is opened again
once; an unreachable backend or one that answers nonsense raises `BackendUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import urljoin, urlsplit

import structlog

from moorage_proxyrunner.backends.remote.client import OutgoingRefused
from moorage_proxyrunner.backends.reverse.upstream import Client, Response, UpstreamError
from moorage_proxyrunner.protocol.jsonrpc import Json, RequestId
from moorage_proxyrunner.protocol.sse import EventParser

log = structlog.get_logger(__name__)

Deliver = Callable[[Json], Awaitable[None]]
"""Takes a message the backend sent that answers none of the aggregator's requests."""
ACCEPT: Final = "application/json, text/event-stream"
MAX_ERROR_BODY: Final = 64 * 1024
REFUSALS: Final = frozenset({401, 403})
"""Statuses by which a backend refuses the caller's credentials (whatever the body)."""


class BackendUnavailable(Exception):
    """The backend cannot be reached or used; the message says why, `status` the HTTP status
    when the backend answered with one (401 and 403: it refused the caller, not failed)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class BackendSession:
    """The aggregator's session with one backend (`transport`: streamable-http or sse)."""

    def __init__(
        self,
        name: str,
        url: str,
        client: Client,
        *,
        transport: str,
        deliver: Deliver,
        initialize_params: Json,
        timeout: float,
    ) -> None:
        self.name = name
        self.url = url
        self.client = client
        self.target = client.target(url)
        self.transport = transport
        self.deliver = deliver
        self.initialize_params = initialize_params
        self.timeout = timeout
        self.session_id: str | None = None
        self.protocol_version: str | None = None
        self.server: Json | None = None
        """The backend's `initialize` result, once open."""
        self._ids = itertools.count(1)
        self._opening = asyncio.Lock()
        self._stream: Response | None = None
        self._reader: asyncio.Task[None] | None = None
        self._messages_path: str | None = None
        self._waiting: dict[RequestId, asyncio.Future[Json]] = {}

    @property
    def is_open(self) -> bool:
        return self.server is not None

    def next_id(self) -> int:
        return next(self._ids)

    async def open(self) -> Json:
        """The backend's `initialize` result, initialising it first when not done yet."""
        async with self._opening:
            if self.server is not None:
                return self.server
            try:
                async with asyncio.timeout(self.timeout):
                    if self.transport == "sse":
                        await self._connect_stream()
                    answer = await self._exchange(
                        {
                            "jsonrpc": "2.0",
                            "id": f"init-{self.next_id()}",
                            "method": "initialize",
                            "params": self.initialize_params,
                        }
                    )
                    result = answer.get("result")
                    if not isinstance(result, dict):
                        raise BackendUnavailable(f"initialize was refused: {answer.get('error')}")
                    version = result.get("protocolVersion")
                    self.protocol_version = version if isinstance(version, str) else None
                    await self._post(
                        {"jsonrpc": "2.0", "method": "notifications/initialized"}, notify=True
                    )
            except TimeoutError:
                await self.reset()
                raise BackendUnavailable(f"no answer within {self.timeout:g}s") from None
            except (UpstreamError, OutgoingRefused, BackendUnavailable):
                await self.reset()
                raise
            self.server = result
            return result

    async def request(self, method: str, params: Json | None, request_id: int) -> Json:
        """Send a request and return the backend's answer (a JSON-RPC response message)."""
        message: Json = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        for attempt in (1, 2):
            await self.open()
            try:
                async with asyncio.timeout(self.timeout):
                    return await self._exchange(message)
            except TimeoutError:
                raise BackendUnavailable(
                    f"no answer to {method} within {self.timeout:g}s"
                ) from None
            except _SessionGone:
                await self.reset()
                if attempt == 2:
                    raise BackendUnavailable("the backend keeps forgetting its session") from None
        raise AssertionError("unreachable")

    async def send(self, message: Json) -> None:
        """Send a notification or a response (to one of the backend's own requests)."""
        if not self.is_open:
            return
        # Best effort: a backend that cannot take it is found out by the next request or check.
        with contextlib.suppress(
            _SessionGone, BackendUnavailable, UpstreamError, OutgoingRefused, OSError
        ):
            await self._post(message, notify=True)

    async def listen(self) -> None:
        """Read the backend's stream of unsolicited messages (streamable HTTP `GET`) until it
        ends; a backend without one returns at once."""
        if self.transport == "sse" or not self.is_open:
            return
        response = await self.client.request(
            "GET", self.target, headers=self._headers(accept="text/event-stream")
        )
        try:
            if response.status != 200 or response.content_type != "text/event-stream":
                return
            await self._read_events(response, None)
        finally:
            response.close()

    async def reset(self) -> None:
        """Forget the session (the backend is down or forgot it); the next request reopens."""
        self.server = None
        self.protocol_version = None
        self.session_id = None
        self._messages_path = None
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(BackendUnavailable("the backend's stream ended"))
        self._waiting.clear()

    async def close(self) -> None:
        """End the session: DELETE it on a streamable HTTP backend, close the stream."""
        session = self.session_id
        if session is not None and self.transport != "sse":
            with contextlib.suppress(UpstreamError, OutgoingRefused, OSError, TimeoutError):
                async with asyncio.timeout(5):
                    response = await self.client.request(
                        "DELETE", self.target, headers={"Mcp-Session-Id": session}
                    )
                    response.close()
        await self.reset()

    def _headers(self, *, accept: str = ACCEPT) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": accept}
        if self.session_id is not None:
            headers["Mcp-Session-Id"] = self.session_id
        if self.protocol_version is not None:
            headers["MCP-Protocol-Version"] = self.protocol_version
        return headers

    async def _exchange(self, message: Json) -> Json:
        request_id = message["id"]
        if self.transport == "sse":
            future: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
            self._waiting[request_id] = future
            try:
                await self._post(message, notify=True)
                return await future
            finally:
                self._waiting.pop(request_id, None)
        response = await self._post(message, notify=False)
        assert response is not None
        try:
            if response.content_type == "text/event-stream":
                answer = await self._read_events(response, request_id)
                if answer is None:
                    raise BackendUnavailable(
                        f"the stream ended without answering {message['method']}"
                    )
                return answer
            body = await response.read()
            return _answer_of(body, response.status)
        finally:
            response.close()

    async def _post(self, message: Json, *, notify: bool) -> Response | None:
        path = self._messages_path if self.transport == "sse" else None
        if self.transport == "sse" and path is None:
            raise _SessionGone
        response = await self.client.request(
            "POST",
            self.target,
            headers=self._headers(),
            body=json.dumps(message, separators=(",", ":")).encode(),
            path=path,
        )
        if response.status == 404 and self.session_id is not None:
            response.close()
            raise _SessionGone
        session = response.headers.get("mcp-session-id")
        if session:
            self.session_id = session
        if response.status in REFUSALS or (
            response.status >= 400 and response.content_type != "application/json"
        ):
            body = await _read_some(response)
            response.close()
            raise BackendUnavailable(
                f"HTTP {response.status}: {body.decode('utf-8', 'replace')[:200]}",
                status=response.status,
            )
        if notify:
            response.close()
            return None
        return response

    async def _read_events(self, response: Response, request_id: RequestId | None) -> Json | None:
        parser = EventParser()
        async for piece in response.chunks():
            for event in parser.feed(piece):
                if event.event == "endpoint" and request_id is None and self.transport == "sse":
                    self._messages_path = _path_of(urljoin(self.url, event.data.strip()))
                    continue
                if event.event != "message" or not event.data:
                    continue
                try:
                    message = json.loads(event.data)
                except json.JSONDecodeError:
                    log.warning("aggregate_backend_bad_event", backend=self.name)
                    continue
                if not isinstance(message, dict):
                    continue
                if _is_answer(message):
                    answered = message.get("id")
                    if request_id is not None and answered == request_id:
                        return message
                    waiting = self._waiting.get(answered) if answered is not None else None
                    if waiting is not None and not waiting.done():
                        waiting.set_result(message)
                    continue
                await self.deliver(message)
        return None

    async def _connect_stream(self) -> None:
        response = await self.client.request(
            "GET", self.target, headers={"Accept": "text/event-stream"}
        )
        if response.status != 200:
            response.close()
            raise BackendUnavailable(f"its SSE stream answered HTTP {response.status}")
        self._stream = response
        self._reader = asyncio.create_task(self._read_stream(response))
        while self._messages_path is None:
            if self._reader.done():
                raise BackendUnavailable("its SSE stream ended without an endpoint")
            await asyncio.sleep(0.01)

    async def _read_stream(self, response: Response) -> None:
        try:
            await self._read_events(response, None)
        except (UpstreamError, OSError) as exc:
            log.info("aggregate_backend_stream_ended", backend=self.name, error=str(exc))
        finally:
            self._messages_path = None
            self.server = None
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(BackendUnavailable("the backend's stream ended"))


class _SessionGone(Exception):
    """The backend answered 404 to the session's id: it no longer knows it."""


def _is_answer(message: Json) -> bool:
    return "method" not in message and ("result" in message or "error" in message)


def _answer_of(body: bytes, status: int) -> Json:
    try:
        message: Any = json.loads(body)
    except json.JSONDecodeError:
        raise BackendUnavailable(f"HTTP {status} without a JSON-RPC answer") from None
    if not isinstance(message, dict) or not _is_answer(message):
        raise BackendUnavailable(f"HTTP {status} without a JSON-RPC answer")
    return message


async def _read_some(response: Response) -> bytes:
    body = b""
    with contextlib.suppress(UpstreamError):
        async for piece in response.chunks():
            body += piece
            if len(body) > MAX_ERROR_BODY:
                break
    return body


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
