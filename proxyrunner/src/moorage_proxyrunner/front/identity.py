"""The caller's identity on an aiohttp request: where authentication leaves it, how endpoints read it.

Authentication (`moorage_proxyrunner.policy.authn`) stores the `Identity` it established under
`IDENTITY_KEY`; both backends' endpoints read it with `identity_of` (a request no authentication
looked at is `ANONYMOUS`).
"""

from __future__ import annotations

from aiohttp import web

from moorage_proxyrunner.protocol.pipeline import ANONYMOUS, Identity

IDENTITY_KEY = web.RequestKey("moorage_identity", Identity)
"""Where authentication middleware leaves the caller's `Identity` on the aiohttp request."""


def identity_of(request: web.Request) -> Identity:
    identity = request.get(IDENTITY_KEY)
    return identity if isinstance(identity, Identity) else ANONYMOUS
