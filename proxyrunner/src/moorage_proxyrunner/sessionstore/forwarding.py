"""A client's request passed on to the replica that owns its session (its live parts are there).

`Forwarder.forward_to_owner(request, owner=..., body=..., address=...)` re-sends the client's
method, path, query, headers and body to `http://<owner>` (the MCP port of a replica is plain
HTTP) and streams the owner's answer back as it comes, SSE included: the status, the headers and
every chunk, written to the client when it arrives. `Authorization` goes along, so that the owner
authenticates the request itself; hop-by-hop headers do not, and `Host` names the owner. The
request is marked `X-Moorage-Forwarded: <sender>`, and a replica never forwards a request so
marked (`is_forwarded`): two replicas that each think the other owns a session answer instead of
passing it back and forth. A caller forwards before running the request's pipeline (audit,
rate limits, the tool filter, Cedar): the owner runs it, so that a request is recorded, counted
against its limits and decided once.

An owner that cannot be reached (the connection is refused or not made within
`CONNECT_TIMEOUT`) gives None: the caller adopts the session. Once connected nothing is timed
out, since an SSE stream lasts as long as the client keeps it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final

import aiohttp
import structlog
from aiohttp import web
from aiohttp.typedefs import LooseHeaders
from multidict import CIMultiDict

log = structlog.get_logger(__name__)

FORWARDED_HEADER: Final = "X-Moorage-Forwarded"
"""Set on a forwarded request, to the address of the replica that forwarded it."""
CONNECT_TIMEOUT: Final = 2.0
"""Seconds to connect to the owner before it counts as gone."""

HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
"""Headers about one connection (RFC 9110 §7.6.1), never passed on."""
_RECOMPUTED: Final = frozenset({"host", "content-length"})


def is_forwarded(request: web.Request) -> bool:
    """Whether another replica forwarded `request` here (then it is served, never forwarded)."""
    return FORWARDED_HEADER in request.headers


def passed_headers(
    headers: LooseHeaders,
    *,
    drop: frozenset[str] = _RECOMPUTED,
) -> CIMultiDict[str]:
    """`headers` without the hop-by-hop ones (those named by `Connection` too) and `drop`."""
    source: CIMultiDict[str] = CIMultiDict(headers)
    named = {
        token.strip().lower()
        for value in source.getall("Connection", [])
        for token in value.split(",")
        if token.strip()
    }
    skipped = HOP_BY_HOP | named | drop
    passed: CIMultiDict[str] = CIMultiDict()
    for name, value in source.items():
        if name.lower() not in skipped:
            passed.add(name, value)
    return passed


def _owner_lost(message: str) -> web.Response:
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": message}}
    return web.Response(status=502, text=json.dumps(body), content_type="application/json")


class Forwarder:
    """Forwards requests to other replicas over one connection pool, opened on first use and
    closed by `close()`. (A method rather than a module function: the pool is this object's.)"""

    def __init__(
        self,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        on_outcome: Callable[[str], None] | None = None,
    ) -> None:
        """`on_outcome` hears how each forwarding ended: `ok`, `owner_unreachable` or
        `owner_lost` (the start-up counts them in `moorage_proxy_requests_forwarded_total`)."""
        self._on_outcome = on_outcome
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=None
        )
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Bytes pass through as the owner sent them (a compressed answer stays compressed),
            # and no proxy from the environment stands between two replicas.
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, auto_decompress=False, trust_env=False
            )
        return self._session

    async def forward_to_owner(
        self, request: web.Request, *, owner: str, body: bytes | None, address: str
    ) -> web.StreamResponse | None:
        """Send `request` (whose body the caller read as `body`; None: it has none) to the
        replica at `owner` (`host:port`), as the replica at `address`, and stream its answer
        back; None when `owner` cannot be reached (nothing was sent to the client)."""
        headers = passed_headers(request.headers)
        headers["Host"] = owner
        headers[FORWARDED_HEADER] = address
        url = f"http://{owner}{request.rel_url}"
        try:
            upstream = await self._client().request(
                request.method, url, headers=headers, data=body, allow_redirects=False
            )
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            log.info("forward_owner_unreachable", owner=owner, error=str(exc))
            self._outcome("owner_unreachable")
            return None
        except aiohttp.ClientError as exc:
            # Connected, then lost before an answer: the owner may have acted on the request,
            # so it is not served again here; the client decides whether to retry.
            log.warning("forward_owner_lost", owner=owner, error=str(exc) or type(exc).__name__)
            self._outcome("owner_lost")
            return _owner_lost(f"The replica holding this session ({owner}) did not answer")
        self._outcome("ok")
        async with upstream:
            response = web.StreamResponse(
                status=upstream.status,
                reason=upstream.reason,
                headers=passed_headers(upstream.headers, drop=frozenset()),
            )
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            except aiohttp.ClientError as exc:
                # The status is sent; ending the stream is all that can tell the client.
                log.warning("forward_stream_lost", owner=owner, error=str(exc))
                return response
            await response.write_eof()
        return response

    def _outcome(self, outcome: str) -> None:
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
