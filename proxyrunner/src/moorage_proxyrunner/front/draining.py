"""What a replica that is shutting down still serves, told from a request's line and headers.

From SIGTERM until it exits a replica hands its sessions over (`front.app.drain`): it refuses
what would open a session here, since the session would have to move again within seconds, and
goes on serving the sessions it has until their requests in flight are answered. Only the
request line and headers are read: the guard that asks runs before authentication, and a body
is never read before the caller is known.

Pure: no I/O.
"""

from __future__ import annotations

from typing import Final

SHUTTING_DOWN: Final = "this replica is shutting down; retry and another replica will serve it"
"""The JSON-RPC -32000 message of a new session refused while draining (HTTP 503): a balancer
or a client retries, and another replica answers."""

LISTEN_METHOD: Final = "subscriptions/listen"
"""The 2026-07-28 request whose answer is a stream that lasts until the client leaves."""


def is_stream(method: str, *, mcp_method: str | None) -> bool:
    """Whether the request holds a long-lived stream rather than waiting for one answer: a
    `GET` (a session's own stream, a legacy HTTP+SSE session) or a 2026-07-28
    `subscriptions/listen`. The drain waits for answers, and ends streams afterwards."""
    return method == "GET" or (method == "POST" and mcp_method == LISTEN_METHOD)


def opens_session(
    method: str, *, path: str, session_id: str | None, mcp_method: str | None
) -> bool:
    """Whether the request would open a session (or a stream) on this replica.

    - `GET /sse`: a legacy HTTP+SSE session;
    - `POST /mcp` without `Mcp-Session-Id` on the handshake wire (no `Mcp-Method`, or
      `initialize`): an `initialize`. A sessionless server's other requests look the same from
      the headers; refusing them too costs one retry, while reading the body here would read it
      before authentication;
    - a 2026-07-28 `subscriptions/listen`: its stream would be ended within the drain.

    Requests of an existing session (`Mcp-Session-Id`, a legacy `POST /messages`), and
    2026-07-28 requests, which hold nothing between requests, are served.
    """
    if method == "GET":
        return path == "/sse"
    if method != "POST" or path != "/mcp":
        return False
    if mcp_method == LISTEN_METHOD:
        return True
    return session_id is None and mcp_method in (None, "initialize")
