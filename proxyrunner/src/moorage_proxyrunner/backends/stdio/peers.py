"""The clients the stdio bridge serves ("peers"), as the bridge knows them.

A peer is a legacy session, one modern (2026-07-28) request, or a modern listen stream. The
front end creates it and hands it to the bridge (`StdioBridge.attach`); the bridge's
collaborators keep their per-client state on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from moorage_proxyrunner.front.streams import Mailbox
from moorage_proxyrunner.protocol.jsonrpc import Json, RequestId


@dataclass(eq=False, slots=True)
class Peer:
    """A client the bridge serves: a legacy session, one modern request, or a listen stream.

    Invariants: `inflight` maps the peer's own request ids to backend ids of its requests that
    are still pending; `subscriptions` are the resource URIs this peer holds a reference on.
    """

    key: str
    modern: bool = False
    capabilities: Json = field(default_factory=dict)
    log_level: str | None = None
    mailbox: Mailbox | None = None
    listen: Json | None = None
    """A modern listen stream's honoured filter (`toolsListChanged`, ...); None otherwise."""
    listen_id: RequestId | None = None
    subscriptions: set[str] = field(default_factory=set)
    inflight: dict[RequestId, int] = field(default_factory=dict)
    server_requests: dict[str, RequestId] = field(default_factory=dict)
    """Proxy-assigned ids of server-to-client requests sent to this peer → backend ids."""
    owner: object = None
    """Who holds `subscriptions` (the front end's caller identity), so that they can be
    checked again when the access policy changes; opaque to the bridge."""
    caller: object = None
    """The front end's caller identity of the peer's latest request (opaque to the bridge: an
    in-memory server acting for the peer upstream needs it, `StdioBridge.caller_of`)."""
    client_info: Json | None = None
    """What the client says it is (`clientInfo`), passed on to a modern-era backend."""
    principal: str | None = None
    """The authenticated subject the peer acts for (None: unauthenticated); a call parked for
    `input_required` resumes only for the same one."""
