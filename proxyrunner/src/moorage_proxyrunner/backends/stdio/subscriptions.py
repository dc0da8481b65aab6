"""Resource subscriptions of the shared stdio server, reference-counted.

Many clients may subscribe to one URI; the server sees one subscription per URI, taken when
the first client holds it and dropped when the last lets go. The bridge asks the server; this
module only counts.
"""

from __future__ import annotations

from moorage_proxyrunner.backends.stdio.peers import Peer


class Subscriptions:
    """Who holds which resource URI."""

    def __init__(self) -> None:
        self._holders: dict[str, set[str]] = {}
        """URI → keys of the peers holding it. Invariants: a peer's key is in `_holders[uri]`
        exactly when `uri` is in that peer's `subscriptions`; no URI maps to an empty set, so
        the URIs present are the ones the server is subscribed to (or being asked)."""

    def hold(self, peer: Peer, uri: str) -> bool:
        """Take a reference on `uri` for `peer`; True when it is the first (ask the backend)."""
        if uri in peer.subscriptions:
            return False
        peer.subscriptions.add(uri)
        holders = self._holders.setdefault(uri, set())
        holders.add(peer.key)
        return len(holders) == 1

    def drop(self, peer: Peer, uri: str) -> None:
        """Undo `hold` (the backend refused the subscription, or `release`)."""
        peer.subscriptions.discard(uri)
        holders = self._holders.get(uri)
        if holders is not None:
            holders.discard(peer.key)
            if not holders:
                del self._holders[uri]

    def release(self, peer: Peer, uri: str) -> bool:
        """Drop `peer`'s reference; True when it was the last (ask the backend to stop)."""
        if uri not in peer.subscriptions:
            return False
        self.drop(peer, uri)
        return uri not in self._holders

    def holders(self, uri: str) -> set[str]:
        """Keys of the peers holding `uri`."""
        return self._holders.get(uri, set())

    def uris(self) -> list[str]:
        """Every URI some peer holds."""
        return list(self._holders)
