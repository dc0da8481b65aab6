"""Server-to-client requests (sampling, elicitation, roots): which client to ask, and the ids.

A request the server sends while a client request is in flight belongs to that request: one
such request (during which a server may ask something), or several from one legacy session,
decide it; a request several clients' requests could have caused is failed with an error that
says so, unless the server tells which request it belongs to (`related`: the aggregator, whose
backend sessions are each one client's, can). One sent outside any client request is routed as `unsolicited` decides (to a capable
client's stream, held until one connects, or refused). A legacy client gets the request under a
proxy-assigned id (`moorage-<n>`) and its answer goes back under the server's id; a modern
client cannot receive requests, so its call is parked for `input_required` (`Parking`).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Mapping
from typing import Final

import structlog

from moorage_proxyrunner.backends.stdio import unsolicited
from moorage_proxyrunner.backends.stdio.delivery import Delivery
from moorage_proxyrunner.backends.stdio.peers import Peer
from moorage_proxyrunner.backends.stdio.pending import Pending, PendingRequests
from moorage_proxyrunner.protocol import eras
from moorage_proxyrunner.protocol.jsonrpc import (
    INTERNAL_ERROR,
    METHOD_NOT_FOUND,
    Json,
    Message,
    RequestId,
    error_response,
)

log = structlog.get_logger(__name__)

HELD_LIMIT: Final = 32
"""Server requests held for a client to connect; beyond it the oldest is failed."""

Park = Callable[[Pending, RequestId, str, Json, str | None], None]
"""Parks a modern client's call on a server request (`Parking.ask`)."""


class ServerRequests:
    """Attributes server requests to clients and maps their ids both ways."""

    def __init__(
        self,
        *,
        pending: PendingRequests,
        peers: Mapping[str, Peer],
        delivery: Delivery,
        send_later: Callable[[Json], None],
        park: Park,
        related: Callable[[RequestId], RequestId | None] = lambda _: None,
    ) -> None:
        self._pending = pending
        self._related = related
        """The server's word on which client request (its backend id) one of its requests
        belongs to, when it knows (an in-memory server with a session per client)."""
        self._peers = peers
        self._delivery = delivery
        self._send_later = send_later
        self._park = park
        self._ids = itertools.count(1)
        self._routed: dict[str, tuple[Peer, RequestId]] = {}
        """Proxy-assigned id → (peer, server's id) of each request sent to a legacy client and
        not answered yet. Invariant: the same key maps to the same server id in that peer's
        `server_requests`."""
        self._held: deque[Message] = deque()
        """Requests sent outside any client request, waiting for a capable client stream (at
        most `HELD_LIMIT`; the oldest is failed beyond)."""

    def on_request(self, message: Message) -> None:
        """A request from the server (not `ping`, which the bridge answers itself)."""
        backend_id = message.id
        assert backend_id is not None
        method = message.method
        target = self._told(backend_id) or self.attribute()
        if target is None:
            busy = {
                p.peer.key
                for p in self._pending
                if p.peer is not None and p.method in eras.INTERACTIVE and p.exchange is not None
            }
            if not busy:
                self._on_unsolicited(message)
                return
            why = f"{len(busy)} clients have requests in flight, so the proxy cannot tell which one to ask"
            self._send_later(
                error_response(backend_id, INTERNAL_ERROR, f"Cannot route {method}: {why}")
            )
            return
        peer, pending = target
        capability = eras.CAPABILITY_FOR_SERVER_REQUEST.get(method)
        if peer.modern:
            self._park(pending, backend_id, method, message.params, capability)
            return
        if capability is not None and not eras.has_capability(peer.capabilities, capability):
            self._send_later(
                error_response(
                    backend_id, METHOD_NOT_FOUND, f"The client does not support {method}"
                )
            )
            return
        key = self._next_key()
        body = dict(message.body)
        body["id"] = key
        if not self._delivery.to_request(pending, body):
            self._send_later(
                error_response(
                    backend_id, INTERNAL_ERROR, f"The client has no open stream to receive {method}"
                )
            )
            return
        peer.server_requests[key] = backend_id
        self._routed[key] = (peer, backend_id)

    def _told(self, backend_id: RequestId) -> tuple[Peer, Pending] | None:
        """The in-flight request the server said its request belongs to, if any."""
        pending = self._pending.get(self._related(backend_id))
        if pending is None or pending.peer is None or pending.exchange is None:
            return None
        return pending.peer, pending

    def attribute(self) -> tuple[Peer, Pending] | None:
        """The request a server-to-client request belongs to, when that can be decided.

        Only requests during which a server may ask something (tools/call, prompts/get, ...)
        count. One such request, or several from one legacy session, decide it.
        """
        found: tuple[Peer, Pending] | None = None
        for pending in self._pending:
            peer = pending.peer
            if peer is None or pending.method not in eras.INTERACTIVE or pending.exchange is None:
                # A parked call waits on answers the client has not sent yet; it asks nothing new.
                continue
            if found is not None and (found[0] is not peer or peer.modern):
                return None
            found = (peer, pending)
        return found

    @staticmethod
    def candidate(peer: Peer) -> unsolicited.Candidate:
        mailbox = peer.mailbox
        return unsolicited.Candidate(
            key=peer.key,
            capabilities=peer.capabilities,
            modern=peer.modern,
            stream_open=mailbox is not None and not mailbox.closed and peer.listen is None,
        )

    def _on_unsolicited(self, message: Message) -> None:
        """A server request no client request is in flight for (see `unsolicited`)."""
        backend_id = message.id
        assert backend_id is not None
        route = unsolicited.route_unsolicited(
            message.method, (self.candidate(p) for p in self._peers.values())
        )
        if isinstance(route, unsolicited.Deliver):
            self._send_to_stream(self._peers[route.key], message)
        elif isinstance(route, unsolicited.Hold):
            if len(self._held) >= HELD_LIMIT:
                oldest = self._held.popleft()
                self._send_later(
                    error_response(
                        oldest.id, INTERNAL_ERROR, "No client connected to answer in time"
                    )
                )
            self._held.append(message)
            log.info("server_request_held", method=message.method, held=len(self._held))
        else:
            log.info("server_request_refused", method=message.method, reason=route.message)
            self._send_later(error_response(backend_id, route.code, route.message))

    def _send_to_stream(self, peer: Peer, message: Message) -> None:
        """Send a server request to `peer`'s own stream under a proxy-assigned id."""
        assert peer.mailbox is not None
        assert message.id is not None
        key = self._next_key()
        body = dict(message.body)
        body["id"] = key
        peer.server_requests[key] = message.id
        self._routed[key] = (peer, message.id)
        self._delivery.push(peer.mailbox, body)

    def _next_key(self) -> str:
        return f"moorage-{next(self._ids)}"

    def give_held(self, peer: Peer) -> None:
        """`peer`'s stream opened: send it the held requests it can answer."""
        candidate = self.candidate(peer)
        waiting: deque[Message] = deque()
        for message in self._held:
            if unsolicited.can_answer(candidate, message.method):
                self._send_to_stream(peer, message)
            else:
                waiting.append(message)
        self._held = waiting

    def take_answer(self, peer: Peer, message: Json) -> bool:
        """A client's answer to a request routed to it: True when it is one (its id is then the
        server's again, to be sent on), False to drop it."""
        key = message.get("id")
        if not isinstance(key, str):
            return False
        routed = self._routed.get(key)
        if routed is None or routed[0] is not peer:
            log.debug("client_response_dropped", session=peer.key, id=key)
            return False
        del self._routed[key]
        message["id"] = peer.server_requests.pop(key, routed[1])
        return True

    def cancel(self, backend_id: object) -> bool:
        """The server cancelled a request it sent; True when it was routed to a legacy client
        (which is told)."""
        for key, (peer, routed_id) in list(self._routed.items()):
            if routed_id == backend_id:
                del self._routed[key]
                peer.server_requests.pop(key, None)
                if peer.mailbox is not None:
                    cancel = {
                        "jsonrpc": "2.0",
                        "method": "notifications/cancelled",
                        "params": {"requestId": key},
                    }
                    self._delivery.push(peer.mailbox, cancel)
                return True
        return False

    def forget_peer(self, peer: Peer, reason: str) -> None:
        """`peer` is gone: the server's requests to it are failed."""
        for key, server_id in list(peer.server_requests.items()):
            self._routed.pop(key, None)
            self._send_later(
                error_response(server_id, INTERNAL_ERROR, f"The client is gone ({reason})")
            )
        peer.server_requests.clear()

    def forget_routes(self) -> None:
        """The process ended: its requests to clients will never be answered to it."""
        for key, (peer, _) in list(self._routed.items()):
            peer.server_requests.pop(key, None)
        self._routed.clear()

    def forget_held(self) -> None:
        """The process ended: what it asked means nothing to the next one."""
        self._held.clear()
