"""Read deadlines for our aiohttp servers: how long a client may take to send its request.

aiohttp itself waits for a request's line and headers, and a handler waits for its body, as
long as the client keeps trickling bytes; a few hundred such connections hold sockets, buffers
and handler tasks indefinitely (slowloris). Two deadlines end them:

- headers: aiohttp's `keepalive_timeout` closes a connection whose handler is waiting for the
  next request, counted from when the connection opened and again from each answer. A client
  still sending a request's line and headers is in that state too, so the same timer is the
  header deadline and the idle limit between keep-alive requests (`runner_options`).
- body: `body_deadline` arms a timer when a request whose body is still arriving reaches the
  app, and aborts the connection if the body is not in by then. The timer stops the moment
  aiohttp has received the whole body, so it never bounds the handler's own work nor a
  response stream (an SSE `GET` has no body: no timer at all).

The webhook and the proxy runner both use these; `HTTPSServer` applies them to its runner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from aiohttp import typedefs, web

from moorage_core.settings import SettingSpec, parse_positive_duration

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DEFAULT_HEADER_TIMEOUT = 30.0
DEFAULT_BODY_TIMEOUT = 60.0


class HasReadTimeouts(Protocol):
    @property
    def header_timeout(self) -> float: ...
    @property
    def body_timeout(self) -> float: ...


@dataclass(frozen=True, slots=True)
class ReadTimeouts:
    """How long a client may take to send a request; 0 turns a deadline off."""

    header: float = DEFAULT_HEADER_TIMEOUT
    """Seconds from connecting (or from the previous answer on a keep-alive connection) until
    a request's line and headers are in; also how long an idle keep-alive connection stays
    open (default 30)."""
    body: float = DEFAULT_BODY_TIMEOUT
    """Seconds from a request's headers until its whole body is in (default 60)."""

    @classmethod
    def of(cls, settings: HasReadTimeouts) -> ReadTimeouts:
        """The deadlines a component's settings name (`READ_TIMEOUT_SPECS` fill them)."""
        return cls(header=settings.header_timeout, body=settings.body_timeout)

    def runner_options(self) -> dict[str, Any]:
        """Keyword arguments for `web.AppRunner` that set the header deadline."""
        # aiohttp's own default keeps idle connections for an hour.
        return {"keepalive_timeout": self.header} if self.header > 0 else {}

    def install(self, app: web.Application) -> None:
        """Put the body deadline first among `app`'s middlewares (before the app is frozen)."""
        app.middlewares.insert(0, body_deadline(self.body))


READ_TIMEOUT_SPECS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "header_timeout",
        "HEADER_TIMEOUT",
        "header-timeout",
        parse_positive_duration,
        "DURATION",
        "how long a client may take to send a request's headers (and stay idle between requests)",
    ),
    SettingSpec(
        "body_timeout",
        "BODY_TIMEOUT",
        "body-timeout",
        parse_positive_duration,
        "DURATION",
        "how long a client may take to send a request's body",
    ),
)
"""The two deadlines as settings (`header_timeout`, `body_timeout` fields of a component's
settings)."""


def _abort(request: web.Request, timeout: float) -> None:
    transport = request.transport
    if transport is None or transport.is_closing():
        return
    log.info("request_body_timed_out", path=request.path, method=request.method, timeout_s=timeout)
    # abort, not close: a TLS close would wait for the trickling peer's close_notify.
    transport.abort()


def body_deadline(timeout: float) -> typedefs.Middleware:
    """A middleware that aborts a connection whose request body is not in after `timeout`
    seconds (0: no deadline)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        content = request.content
        if timeout <= 0 or content.is_eof():
            return await handler(request)
        timer = asyncio.get_running_loop().call_later(timeout, _abort, request, timeout)
        content.on_eof(timer.cancel)
        try:
            return await handler(request)
        finally:
            timer.cancel()

    return middleware
