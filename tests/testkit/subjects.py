"""A stand-in for authentication in front-end tests: the caller's subject is a header."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from moorage_proxyrunner.front.identity import IDENTITY_KEY
from moorage_proxyrunner.protocol.pipeline import Identity


@web.middleware
async def subject_header(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The caller's subject is the `X-Subject` header (none: anonymous)."""
    subject = request.headers.get("X-Subject")
    if subject:
        request[IDENTITY_KEY] = Identity(subject=subject)
    return await handler(request)
