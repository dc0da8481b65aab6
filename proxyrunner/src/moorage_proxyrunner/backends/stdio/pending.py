"""Requests in flight on the shared stdio server, by the id the server sees (id routing).

Every request forwarded to the server gets a fresh backend id (`PendingRequests.next_id`), so
clients may reuse their own ids freely; the response is mapped back to the client's id. A
request the proxy makes itself (`initialize`, `logging/setLevel`, subscriptions) has a `future`
instead of a peer.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from moorage_proxyrunner.backends.stdio.peers import Peer
from moorage_proxyrunner.front.streams import Exchange
from moorage_proxyrunner.protocol.jsonrpc import Json, RequestId

NO_TOKEN: Final = object()
"""`Pending.progress_token` of a request that carried no progress token."""


@dataclass(slots=True)
class InputRequest:
    """A server-to-client request a modern client must answer through `inputResponses`."""

    backend_id: RequestId
    method: str
    params: Json


@dataclass(eq=False, slots=True)
class Pending:
    """A request the backend has not answered yet.

    `exchange` is None while the call is parked waiting for a modern client's retry;
    `future` is set instead of a peer for requests the proxy makes itself.
    """

    backend_id: int
    method: str
    peer: Peer | None = None
    client_id: RequestId | None = None
    exchange: Exchange | None = None
    progress_token: Any = NO_TOKEN
    capabilities: Json = field(default_factory=dict)
    log_level: str | None = None
    future: asyncio.Future[Json] | None = None
    on_done: Callable[[Json], None] | None = None
    target: Any = None
    """What a modern retry must repeat: the tool/prompt name or resource URI."""
    inputs: dict[str, InputRequest] = field(default_factory=dict)
    flush: asyncio.TimerHandle | None = None
    parked_id: str | None = None
    expiry: asyncio.TimerHandle | None = None
    final: Json | None = None
    principal: str | None = None
    """Whose call it is (`Peer.principal`): only that subject's retry resumes it."""
    params: Json | None = None
    """The params as sent to a modern-era backend, which a retry with answers starts from."""

    def clear_timers(self) -> None:
        if self.flush is not None:
            self.flush.cancel()
            self.flush = None
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None


class PendingRequests:
    """The requests the server has not answered, by backend id."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._pending: dict[int, Pending] = {}
        """Invariants: each entry's key is its `backend_id`, never reused while the process
        lives; a client request's peer maps the client's id to that backend id in
        `Peer.inflight` until the request is answered, cancelled or parked."""

    def next_id(self) -> int:
        return next(self._ids)

    def add(self, pending: Pending) -> None:
        self._pending[pending.backend_id] = pending

    def get(self, backend_id: object) -> Pending | None:
        return self._pending.get(backend_id) if isinstance(backend_id, int) else None

    def pop(self, backend_id: object) -> Pending | None:
        return self._pending.pop(backend_id, None) if isinstance(backend_id, int) else None

    def __contains__(self, backend_id: object) -> bool:
        return backend_id in self._pending

    def __iter__(self) -> Iterator[Pending]:
        return iter(self._pending.values())

    def take_all(self) -> list[Pending]:
        """Every pending request, and forget them (the server process ended)."""
        pending = list(self._pending.values())
        self._pending.clear()
        return pending

    @property
    def client_count(self) -> int:
        """Client requests the backend has not answered (parked ones included)."""
        return sum(1 for p in self._pending.values() if p.future is None)

    def only_peer_in_flight(self) -> tuple[Peer, Pending] | None:
        """The one peer with requests in flight, and its latest one; None if zero or several."""
        found: tuple[Peer, Pending] | None = None
        for pending in self._pending.values():
            peer = pending.peer
            if peer is None or pending.exchange is None:
                continue
            if found is not None and found[0] is not peer:
                return None
            found = (peer, pending)
        return found
