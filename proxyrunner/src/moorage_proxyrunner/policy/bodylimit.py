"""The first step of the middleware chain (spec §4.4): a body over the limit, refused at once.

A POST to an MCP path whose declared length (`Content-Length`) passes `max_body_bytes` is
answered 413 before anything else looks at it, authentication included, and none of it is read.
A body sent without a declared length cannot be judged before it is read; the endpoints count
it as they read it (`front.responding.read_body`) and refuse it with the same 413.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from moorage_proxyrunner.front.app import MCP_PATHS, STATE
from moorage_proxyrunner.front.responding import rpc_error
from moorage_proxyrunner.protocol.jsonrpc import INVALID_REQUEST


@web.middleware
async def body_limit(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    started = time.perf_counter()
    length = request.content_length
    if request.method != "POST" or request.path not in MCP_PATHS or length is None:
        return await handler(request)
    state = request.app[STATE]
    limit = state.settings.max_body_bytes
    if length <= limit:
        return await handler(request)
    state.endpoints.metrics.observe("unknown", "413", time.perf_counter() - started)
    return rpc_error(413, INVALID_REQUEST, f"Request body exceeds {limit} bytes")
