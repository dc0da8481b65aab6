"""What the stdio bridge writes down about a legacy session for the other replicas, and what a
replica decides when a request names a session it does not hold. Pure: no I/O.

A session's record (`sessionstore.records.SessionRecord`) keeps, besides its subject and era,
what the bridge knows of the client (`state`): the capabilities it declared, the log level it
set, the resources it subscribes to, how many times it was adopted (`epoch`, which keeps event
ids unique across replicas, `front.replaying.STREAMS_PER_EPOCH`) and whether every event of its
streams reached the store (`resumable`). That is all a replica needs to rebuild the client on
its own backend process: the backend's session is the bridge's, never the client's.

The rule for a request naming a session this replica does not hold (`route`): the replica that
last served the session, its owner, keeps serving it for as long as it is alive, so what is live
there (the session's GET or HTTP+SSE stream, requests in flight, server→client requests waiting
for the client's answer) goes on working; every request landing elsewhere is forwarded to it.
Only when the owner is gone (not alive, unreachable, or it released the session at shutdown)
does a replica adopt the session. A legacy HTTP+SSE session is never adopted: its stream, the
only way anything reaches its client, ended with its owner.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from moorage_proxyrunner.front.replaying import unpack_event
from moorage_proxyrunner.protocol.eras import log_rank
from moorage_proxyrunner.protocol.jsonrpc import INTERNAL_ERROR, RequestId, encode, error_response
from moorage_proxyrunner.sessionstore.records import Json

CAPABILITIES = "capabilities"
LOG_LEVEL = "logLevel"
SUBSCRIPTIONS = "subscriptions"
EPOCH = "epoch"
RESUMABLE = "resumable"


def in_flight_key(stream: str) -> str:
    """The state key naming the request a request stream answers while it is in flight."""
    return f"r:{stream}"


class Route(enum.Enum):
    FORWARD = "forward"
    """Send the request to the owner, which holds the session's live parts."""
    ADOPT = "adopt"
    """Claim the session, rebuild it here, serve the request."""
    GONE = "gone"
    """The session cannot go on: answered like an unknown session (404)."""
    MOVED = "moved"
    """Forwarded here, but another live replica owns it now: retry (503)."""


def route(*, kind: str, owner: str, own: str, owner_alive: bool, forwarded: bool) -> Route:
    """Where a request for a session this replica does not hold is served.

    `owner_alive`: the owner's heartbeat is current (never true for "" or for this replica,
    which does not hold the session: a restarted process at the same address adopts).
    `forwarded`: another replica sent the request here; it is never passed on again.
    """
    live_elsewhere = owner_alive and owner not in ("", own)
    if kind == "sse":
        return Route.FORWARD if live_elsewhere and not forwarded else Route.GONE
    if not live_elsewhere:
        return Route.ADOPT
    return Route.MOVED if forwarded else Route.FORWARD


def initial_state(capabilities: Json) -> dict[str, Json]:
    """A new session's state."""
    return {CAPABILITIES: capabilities, EPOCH: 0}


@dataclass(frozen=True, slots=True)
class Restored:
    """A client as a record describes it, ready to be rebuilt on this replica's backend."""

    capabilities: Json
    log_level: str | None
    subscriptions: tuple[str, ...]
    epoch: int
    resumable: bool


def restore(state: Mapping[str, Json]) -> Restored:
    """The client a record's state describes. The store is shared, not trusted: a value of the
    wrong shape is dropped rather than handed to the backend."""
    capabilities = state.get(CAPABILITIES)
    level = state.get(LOG_LEVEL)
    uris = state.get(SUBSCRIPTIONS)
    epoch = state.get(EPOCH)
    return Restored(
        capabilities=dict(capabilities) if isinstance(capabilities, dict) else {},
        log_level=level if isinstance(level, str) and log_rank(level) is not None else None,
        subscriptions=tuple(sorted({u for u in uris if isinstance(u, str)}))
        if isinstance(uris, list)
        else (),
        epoch=epoch if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0 else 0,
        resumable=state.get(RESUMABLE) is not False,
    )


def subscriptions_state(uris: set[str]) -> dict[str, Json | None]:
    """The state change that records a session's subscriptions (None removes the key)."""
    return {SUBSCRIPTIONS: sorted(uris) if uris else None}


def replica_stopped_error(request_id: RequestId) -> dict[str, Json]:
    """The end of a resumed request stream whose request was in flight on a replica that
    stopped: the request was not completed and may be sent again."""
    return error_response(
        request_id,
        INTERNAL_ERROR,
        "The proxy replica serving this request stopped before it was answered; "
        "the request may be retried",
    )


@dataclass(frozen=True, slots=True)
class StoredStream:
    """A stream resumed from the store: its events (the id each shows, its data) and whether
    it is a request's stream, which ends with them (else the GET stream, which goes on)."""

    events: list[tuple[str | None, bytes]]
    request_stream: bool


def resume_from_store(events: list[tuple[str, bytes]], in_flight: Json) -> StoredStream | None:
    """What to send a client resuming a stream of a replica that is gone, from the events kept
    after its Last-Event-ID (`pack_event`'s) and the request the stream answered if it was still
    in flight (`in_flight_key`'s value). A request stream ends with its response, or, when the
    response never came, with `replica_stopped_error`. None when an event is not one of ours."""
    shown: list[tuple[str | None, bytes]] = []
    request_id: RequestId | None = (
        in_flight if isinstance(in_flight, (str, int)) and not isinstance(in_flight, bool) else None
    )
    for event_id, packed in events:
        event = unpack_event(packed)
        if event is None:
            return None
        if event.request_id is not None:
            request_id = event.request_id
        if event.final:
            shown.append((None, event.data))
            return StoredStream(shown, request_stream=True)
        shown.append((event_id, event.data))
    if request_id is None:
        return StoredStream(shown, request_stream=False)
    shown.append((None, encode(replica_stopped_error(request_id))))
    return StoredStream(shown, request_stream=True)
