"""Resource subscriptions after an access-policy change: which a caller may no longer hold, and
what its client is told when one ends. Both backends use these; they only compute."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from moorage_proxyrunner.protocol.jsonrpc import FORBIDDEN, Json, RequestId, error_response
from moorage_proxyrunner.protocol.pipeline import Identity


def revoked_uris(
    uris: Iterable[str], owner: Identity, allowed: Callable[[Identity, str], bool]
) -> list[str]:
    """The URIs of `uris` that `owner` may no longer read, sorted."""
    return sorted(uri for uri in uris if not allowed(owner, uri))


def subscription_ended_notice(uri: str) -> Json:
    """What a legacy client is told when the policy ends its subscription to `uri`."""
    return {
        "jsonrpc": "2.0",
        "method": "notifications/message",
        "params": {
            "level": "warning",
            "logger": "moorage-proxy",
            "data": f"The subscription to {uri} has ended: the access policy no longer "
            "allows reading it",
        },
    }


def listen_ended_error(listen_id: RequestId | None, lost: Iterable[str]) -> Json:
    """The error that ends a `subscriptions/listen` stream holding URIs the policy no longer
    allows (`lost`): the stream was authorised as a whole, so it ends whole."""
    uris = ", ".join(lost)
    return error_response(
        listen_id, FORBIDDEN, f"Forbidden: the access policy no longer allows reading {uris}"
    )
