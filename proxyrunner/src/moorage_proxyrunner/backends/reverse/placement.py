"""Where a request of an HTTP backend's session is served when the replica does not hold the
session: what its record in the session store says, decided here; the endpoints do the I/O.

A streamable-HTTP session lives in the upstream server, so any replica may serve a plain request
of it: the record only names the target that created it and the subject who opened it. What the
proxy itself keeps for the session (the resource subscriptions it tracks for the policy
re-check, and the GET stream it relays so that its own notices reach the client) stays with the
owner: requests that change or need that go to the owner while it is alive, and a replica that
finds the owner gone adopts the session, rebuilding the subscriptions from the record. A legacy
HTTP+SSE session is its stream, which cannot move: its POSTs go to the replica holding the
stream, and once that replica is gone the session is over. Pure: no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from moorage_proxyrunner.protocol.pipeline import Identity
from moorage_proxyrunner.sessionstore.records import Json, SessionRecord

STREAMABLE: Final = "streamable-http"
SSE: Final = "sse"


class Route(enum.Enum):
    SERVE = "serve"
    """Serve the request here, from the record."""
    FORWARD = "forward"
    """Send it to the owner, which holds what it needs."""
    ADOPT = "adopt"
    """The owner is gone: claim the session and serve it here."""
    REFUSE = "refuse"
    """Answer it like an unknown session."""


def route(
    record: SessionRecord | None,
    identity: Identity,
    *,
    kind: str,
    own: str,
    needs_owner: bool,
    owner_alive: bool,
    forwarded: bool,
) -> Route:
    """Where a request of a session this replica does not hold goes.

    `needs_owner`: the request needs the session's live parts (always for an HTTP+SSE session);
    `owner_alive`: the record's owner still says it is alive (asked only when it matters);
    `forwarded`: the request came from another replica, so it is never sent on again. Another
    subject's session, a session of another kind, or none at all: REFUSE, all alike.
    """
    if record is None or record.kind != kind or record.subject != identity.subject:
        return Route.REFUSE
    if kind == SSE:
        # The stream is on the owner; with it gone (or this replica being the owner but no
        # longer holding it) the session is over.
        if forwarded or record.owner in ("", own) or not owner_alive:
            return Route.REFUSE
        return Route.FORWARD
    if not needs_owner or record.owner == own or forwarded:
        return Route.SERVE
    if record.owner and owner_alive:
        return Route.FORWARD
    return Route.ADOPT


def streamable_state(target: str) -> dict[str, Json]:
    """What a streamable-HTTP session's record keeps: the URL of the target that created it."""
    return {"target": target}


def sse_state(target: str, messages_url: str) -> dict[str, Json]:
    """What an HTTP+SSE session's record keeps: its target and the upstream messages URL."""
    return {"target": target, "messages": messages_url}


def target_index(record: SessionRecord, targets: Sequence[str]) -> int | None:
    """The index of the record's target among `targets`; None when it is not configured
    (any more): the session is then unknown here."""
    target = record.state.get("target")
    if not isinstance(target, str) or target not in targets:
        return None
    return targets.index(target)


@dataclass(frozen=True, slots=True)
class Subscriptions:
    """What a session subscribed to through the proxy, as its record keeps it for a replica that
    adopts the session: who subscribed (`holder`, whom the policy re-check asks about), the
    URIs, and the log level the session asked for."""

    holder: Identity
    uris: frozenset[str]
    level: str | None


def subscriptions_state(
    holder: Identity | None, uris: Sequence[str], level: str | None
) -> dict[str, Json | None]:
    """The record's state keys for a session's subscriptions (None: removed). The holder is
    kept without its token, which is never stored."""
    kept: dict[str, Json | None] = {"subscriptions": sorted(uris) or None, "level": level}
    kept["holder"] = (
        None if holder is None else {"subject": holder.subject, "claims": dict(holder.claims)}
    )
    return kept


def subscriptions_of(state: Mapping[str, Json]) -> Subscriptions | None:
    """The subscriptions a record's state keeps; None when it keeps none (or not in the shape
    `subscriptions_state` writes)."""
    holder = state.get("holder")
    uris = state.get("subscriptions", [])
    level = state.get("level")
    if not isinstance(holder, dict) or not isinstance(uris, list):
        return None
    subject = holder.get("subject")
    claims = holder.get("claims")
    if (
        (subject is not None and not isinstance(subject, str))
        or not isinstance(claims, dict)
        or not all(isinstance(uri, str) for uri in uris)
        or (level is not None and not isinstance(level, str))
    ):
        return None
    return Subscriptions(Identity(subject, claims), frozenset(uris), level)
