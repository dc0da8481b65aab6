"""Where the stdio server's messages land on client streams, and list-changed fan-out.

A message that belongs to a client request goes on that request's own stream (or, for a
legacy request answered as plain JSON, on its session's stream); a resource update goes to
the streams of the peers holding the URI; a list-changed notification goes to every stream that
takes that kind. A message a slow client's full queue cannot take is dropped and counted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from moorage_proxyrunner.backends.stdio.peers import Peer
from moorage_proxyrunner.backends.stdio.pending import Pending
from moorage_proxyrunner.front.metrics import ProxyMetrics
from moorage_proxyrunner.front.streams import Mailbox
from moorage_proxyrunner.protocol import eras
from moorage_proxyrunner.protocol.jsonrpc import Json

LIST_CHANGED_FLAGS: Final = {
    "notifications/tools/list_changed": "toolsListChanged",
    "notifications/prompts/list_changed": "promptsListChanged",
    "notifications/resources/list_changed": "resourcesListChanged",
}
"""Each list-changed notification and the listen filter flag that asks for it."""


class Delivery:
    """Puts server messages on client streams."""

    def __init__(self, metrics: ProxyMetrics | None) -> None:
        self._metrics = metrics
        self._unseen: dict[str, Json] = {}
        """List-changed notifications no client stream could take yet, by method: at most one
        per kind, given to the next stream that opens, forgotten when the process ends."""

    def push(self, mailbox: Mailbox, message: Json) -> None:
        if not mailbox.push(message) and self._metrics is not None:
            self._metrics.dropped.inc()

    def to_stream(self, peer: Peer, body: Json, *, subscription: bool = False) -> None:
        """Put `body` on `peer`'s own stream (a listen stream's subscription id added)."""
        if peer.mailbox is None:
            return
        message = dict(body)
        if peer.listen is not None and subscription:
            params = dict(message.get("params") or {})
            meta = dict(params.get("_meta") or {})
            meta[eras.SUBSCRIPTION_ID_KEY] = peer.listen_id
            params["_meta"] = meta
            message["params"] = params
        self.push(peer.mailbox, message)

    def to_request(self, pending: Pending, body: Json) -> bool:
        """Put a message on a request's own stream, else on its peer's mailbox."""
        exchange = pending.exchange
        if exchange is not None and exchange.streams:
            if exchange.push(body):
                return True
            if self._metrics is not None:
                self._metrics.dropped.inc()
            return False
        peer = pending.peer
        if peer is not None and peer.mailbox is not None and not peer.modern:
            self.push(peer.mailbox, body)
            return True
        return False

    def fan_out(self, peers: Iterable[Peer], body: Json, method: str) -> None:
        """A list-changed notification to every stream that takes it; kept when none does."""
        reached = False
        for peer in peers:
            reached = self.announce_to(peer, body, method) or reached
        if not reached:
            self._unseen[method] = body

    def announce_to(self, peer: Peer, body: Json, method: str) -> bool:
        """Put a list-changed notification on `peer`'s stream if it takes that kind."""
        if peer.mailbox is None or peer.mailbox.closed:
            return False
        if peer.listen is not None:
            if not peer.listen.get(LIST_CHANGED_FLAGS[method]):
                return False
            self.to_stream(peer, body, subscription=True)
            return True
        if peer.modern:
            return False
        self.to_stream(peer, body)
        return True

    def give_unseen(self, peer: Peer) -> None:
        """`peer`'s stream opened: give it the kept notifications it takes."""
        for method, body in list(self._unseen.items()):
            if self.announce_to(peer, body, method):
                del self._unseen[method]

    def clear(self) -> None:
        """The process ended: what it announced means nothing to the next one."""
        self._unseen.clear()
