"""The one interface through which a proxy keeps its sessions: in memory or in Redis.

Backends and endpoints keep what is live (streams, futures, pipes) in their own objects and
write through a `SessionStore` what another replica needs (`records.SessionRecord`), the events
a client may resume after (`Last-Event-ID`), and which replicas are alive. `MemoryStore`
(`sessionStorage.type: memory`, one replica) keeps them in the process; the Redis store shares
them between replicas. A store that cannot be reached raises `SessionStoreUnavailable`; it never
hangs a request for longer than its command timeout, and comes back by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol

from moorage_proxyrunner.sessionstore.records import Json, SessionRecord

STORE_UNAVAILABLE: Final = -32000
"""The JSON-RPC error (on HTTP 503) for a request that needs the session store while it cannot
be reached: the code the proxy's other server-side refusals use. Both backends answer with it."""


class SessionStoreUnavailable(Exception):
    """The store cannot be reached (or answered something we did not write): a session it
    holds cannot be served now. The message says why, for logs and the client's error."""


class SessionStore(Protocol):
    @property
    def shared(self) -> bool:
        """Whether other replicas see what is stored here (False: memory)."""
        ...

    async def create(self, record: SessionRecord, *, idle_timeout: float) -> None:
        """Store a new session; it is forgotten after `idle_timeout` seconds without `load`."""
        ...

    async def load(self, session_id: str) -> SessionRecord | None:
        """The session, None when unknown or expired; restarts its idle timeout."""
        ...

    async def set_state(self, session_id: str, changes: Mapping[str, Json | None]) -> None:
        """Set (None: remove) keys of the session's state; the others are left alone. Nothing
        happens for an unknown session."""
        ...

    async def set_era(self, session_id: str, era: str) -> None:
        """Record the protocol version the session negotiated."""
        ...

    async def claim(self, session_id: str, *, expected_owner: str, owner: str) -> bool:
        """Make `owner` the session's owner if its owner is still `expected_owner` (an atomic
        compare-and-set); False when it is not, or the session is unknown."""
        ...

    async def release(self, owner: str) -> int:
        """Clear the owner of every session `owner` holds (a replica shutting down leaves its
        sessions for the others); how many were released."""
        ...

    async def delete(self, session_id: str) -> None:
        """Forget the session and its events."""
        ...

    async def append_event(self, session_id: str, stream: str, event_id: str, data: bytes) -> None:
        """Keep an SSE event of one of the session's streams for resumption (the last
        `resume_window` events of a session are kept)."""
        ...

    async def events_after(
        self, session_id: str, stream: str, event_id: str
    ) -> list[tuple[str, bytes]] | None:
        """The stream's kept events after `event_id`, oldest first; None when `event_id` is not
        (or no longer) kept for that stream, so resumption cannot be exact."""
        ...

    async def shared_key(self, name: str) -> bytes:
        """A random 32-byte key that every replica gets the same for `name` (made by the first
        to ask, kept for as long as the store is): what one replica seals (a `requestState`),
        another can open."""
        ...

    async def heartbeat(self, address: str, *, ttl: float) -> None:
        """Say that the replica at `address` is alive for the next `ttl` seconds."""
        ...

    async def is_alive(self, address: str) -> bool:
        """Whether the replica at `address` has said so and not yet timed out."""
        ...

    async def close(self) -> None: ...
