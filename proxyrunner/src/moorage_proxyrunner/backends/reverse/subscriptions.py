"""The resource subscriptions each client session holds through an HTTP backend.

The server holds the subscriptions themselves; the proxy keeps only which URIs each session
subscribed through it (a `resources/subscribe` the server accepted, until a `resources/unsubscribe`
it accepted) and the log level the session asked for, so that after a policy change it can end
those no longer allowed and tell the client within its level. Bounded: a session holds at most
`limit` URIs (`max_subscriptions_per_session`), and its entry goes when the session does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from moorage_proxyrunner.protocol.pipeline import Identity
from moorage_proxyrunner.protocol.revocation import revoked_uris


@dataclass(slots=True)
class Held:
    """One session's subscriptions: `owner` subscribed to `uris`; `level`: its log level."""

    owner: Identity
    uris: set[str] = field(default_factory=set)
    level: str | None = None


class SessionSubscriptions:
    """Session id → what it holds."""

    def __init__(self) -> None:
        self._held: dict[str, Held] = {}

    def uris(self, session: str) -> set[str]:
        held = self._held.get(session)
        return set() if held is None else set(held.uris)

    def level(self, session: str) -> str | None:
        held = self._held.get(session)
        return None if held is None else held.level

    def subscribed(self, session: str, owner: Identity, uri: str) -> None:
        self._held.setdefault(session, Held(owner)).uris.add(uri)

    def unsubscribed(self, session: str, uri: str) -> None:
        held = self._held.get(session)
        if held is not None:
            held.uris.discard(uri)

    def set_level(self, session: str, owner: Identity, level: str) -> None:
        self._held.setdefault(session, Held(owner)).level = level

    def held(self, session: str) -> Held | None:
        return self._held.get(session)

    def restore(self, session: str, owner: Identity, uris: set[str], level: str | None) -> None:
        """What a session held on another replica, taken over from its record."""
        self._held[session] = Held(owner, set(uris), level)

    def forget(self, session: str) -> None:
        self._held.pop(session, None)

    def revoke(self, allowed: Callable[[Identity, str], bool]) -> dict[str, list[str]]:
        """Drop every URI its session's owner may no longer read; session id → the URIs dropped
        (sorted), for the sessions that lost any."""
        lost: dict[str, list[str]] = {}
        for session, held in self._held.items():
            uris = revoked_uris(held.uris, held.owner, allowed)
            if uris:
                held.uris.difference_update(uris)
                lost[session] = uris
        return lost
