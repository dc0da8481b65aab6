"""The upstream client of a proxy with outgoing headers: the reverse backend's, composed.

`OutgoingClient` is the reverse backend's `Client` with two additions. Every request gets the
`OutgoingAuth` headers for the caller of the aiohttp request being served (the `outgoing_caller`
middleware puts that request in a context variable, which tasks the handler starts inherit).
And with `allow_private` off, every connection resolves the host itself, refuses it when any
address is private, loopback or link-local (`is_private_address`), and connects to an address
it checked, so a name that resolves differently later (DNS rebinding) cannot get around it.

What cannot be sent (no exchanged token, a private address) raises `OutgoingRefused`, which the
middleware answers with a JSON-RPC error: 403 when the authorization server refused the
exchange, 502 when it or the remote cannot be reached or used.
"""

from __future__ import annotations

import asyncio
import contextvars
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from moorage_api.outgoing import is_private_address
from moorage_api.runconfig import RunConfig
from moorage_proxyrunner.backends.remote.exchange import (
    ExchangeFailed,
    ExchangeMetrics,
    TokenExchanger,
)
from moorage_proxyrunner.backends.remote.outgoing import (
    OutgoingAuth,
    exchange_config,
    fixed_headers,
)
from moorage_proxyrunner.backends.reverse.upstream import (
    MAX_HEADER_BYTES,
    Client,
    Response,
    Target,
    _tls_context,
)
from moorage_proxyrunner.front.identity import identity_of
from moorage_proxyrunner.front.responding import rpc_error
from moorage_proxyrunner.protocol.jsonrpc import FORBIDDEN, INTERNAL_ERROR, error_response
from moorage_proxyrunner.protocol.pipeline import CallNext, Identity, McpCall, Reply

log = structlog.get_logger(__name__)

CURRENT_REQUEST: Final = contextvars.ContextVar[web.Request | None](
    "moorage_outgoing_request", default=None
)
"""The client request being served, so the upstream client can tell whose call it carries."""
OUTGOING_CALLER: Final = contextvars.ContextVar[Identity | None](
    "moorage_outgoing_caller", default=None
)
"""Whose call the upstream requests carry when no client request is being served here (the
aggregator's backend sessions act for a client session); it wins over `CURRENT_REQUEST`."""


class OutgoingRefused(Exception):
    """A request that cannot be sent upstream; `status` is what the client is answered."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class OutgoingAuthStep:
    """The pipeline's last step in front of an outgoing client: the caller's upstream
    credential is had (a token exchanged, or taken from the cache) after authorisation and the
    audit gate and before the backend, so that a refused exchange is answered, and audited, as
    a JSON-RPC error of the request. The client's own request then finds it in the cache."""

    def __init__(self, auth: OutgoingAuth) -> None:
        self.auth = auth

    async def __call__(self, call: McpCall, call_next: CallNext) -> Reply:
        if self.auth.exchanger is not None:
            try:
                await self.auth.headers(call.identity)
            except ExchangeFailed as exc:
                log.warning(
                    "upstream_request_refused",
                    method=call.method,
                    status=exc.status,
                    error=str(exc),
                )
                code = FORBIDDEN if exc.status in (401, 403) else INTERNAL_ERROR
                return Reply(error_response(call.id, code, str(exc)), status=exc.status)
        return await call_next(call)


def private_addresses(addresses: list[str]) -> list[str]:
    return [address for address in addresses if is_private_address(address)]


class OutgoingClient(Client):
    """A `Client` that adds outgoing headers and checks the addresses it connects to."""

    def __init__(
        self, auth: OutgoingAuth, *, allow_private: bool, connect_timeout: float = 10.0
    ) -> None:
        super().__init__(connect_timeout=connect_timeout)
        self.auth = auth
        self.allow_private = allow_private

    def target(self, url: str) -> Target:
        return Target.parse(url, tls_allowed=True)

    async def request(
        self,
        method: str,
        target: Target,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        path: str | None = None,
    ) -> Response:
        caller = OUTGOING_CALLER.get()
        if caller is None:
            request = CURRENT_REQUEST.get()
            caller = identity_of(request) if request is not None else None
        try:
            added = await self.auth.headers(caller)
        except ExchangeFailed as exc:
            raise OutgoingRefused(str(exc), status=exc.status) from None
        return await super().request(
            method, target, headers={**headers, **added}, body=body, path=path
        )

    async def open_stream(
        self, target: Target
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.allow_private:
            return await super().open_stream(target)
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        addresses = [str(info[4][0]) for info in infos]
        refused = private_addresses(addresses)
        if refused or not addresses:
            log.warning("remote_private_address_refused", host=target.host, addresses=refused)
            raise OutgoingRefused(
                f"the remote host {target.host} resolves to a private or loopback address "
                f"({', '.join(refused)}); allowPrivateEndpoint is off",
                status=502,
            )
        return await asyncio.open_connection(
            addresses[0],
            target.port,
            limit=MAX_HEADER_BYTES,
            ssl=_tls_context() if target.tls else None,
            server_hostname=target.host if target.tls else None,
        )

    async def close(self) -> None:
        await super().close()
        await self.auth.close()


def outgoing_client(
    rc: RunConfig,
    environ: Mapping[str, str],
    *,
    registry: CollectorRegistry,
    cache_size: int = 1024,
) -> OutgoingClient | None:
    """The upstream client for `rc`: None when nothing is added to upstream requests (an
    MCPServer without outgoing authentication); secrets are read from `environ` now, so a
    missing one stops the start-up (`StartupFailure`)."""
    if rc.remote is None and rc.outgoing_auth is None:
        return None
    exchange = exchange_config(rc, environ)
    exchanger = (
        TokenExchanger(exchange, metrics=ExchangeMetrics(registry), cache_size=cache_size)
        if exchange is not None
        else None
    )
    auth = OutgoingAuth(fixed=fixed_headers(rc, environ), exchanger=exchanger)
    # An MCPServer's own pods are private addresses by nature; only a remote is checked.
    allow_private = rc.remote is None or rc.remote.allow_private_endpoint
    return OutgoingClient(auth, allow_private=allow_private)


@web.middleware
async def outgoing_caller(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Makes the request known to the upstream client; answers what it refused to send."""
    token = CURRENT_REQUEST.set(request)
    try:
        return await handler(request)
    except OutgoingRefused as exc:
        log.warning(
            "upstream_request_refused", path=request.path, status=exc.status, error=str(exc)
        )
        code = FORBIDDEN if exc.status in (401, 403) else INTERNAL_ERROR
        return rpc_error(exc.status, code, str(exc))
    finally:
        CURRENT_REQUEST.reset(token)
