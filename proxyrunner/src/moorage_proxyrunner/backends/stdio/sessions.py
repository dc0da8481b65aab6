"""Legacy-era client sessions of the stdio bridge's front end.

A session is created by `initialize` (streamable HTTP) or by opening `GET /sse` (HTTP+SSE) and
ends with `DELETE`, the SSE stream closing, idling past the timeout, or shutdown. Its id is an
unguessable token that ties later requests to the session. Who may use a session and how many
may be open are rules both backends share (`moorage_proxyrunner.front.sessioncaps`).

Each session also has a record in the session store (`sharing`), written when it opens and
deleted when it ends (not at shutdown: the record stays for another replica to adopt); a session
opened elsewhere is rebuilt here from its record by `adopt`.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from moorage_proxyrunner.backends.stdio.bridge import StdioBridge
from moorage_proxyrunner.backends.stdio.peers import Peer
from moorage_proxyrunner.backends.stdio.sessionstate import initial_state
from moorage_proxyrunner.backends.stdio.sharing import SessionSharing
from moorage_proxyrunner.front.metrics import ProxyMetrics
from moorage_proxyrunner.front.replaying import ReplayLog
from moorage_proxyrunner.front.sessioncaps import check_session_caps
from moorage_proxyrunner.front.streams import DEFAULT_MAX_BYTES, Mailbox
from moorage_proxyrunner.sessionstore.records import SessionRecord

Transport = Literal["streamable-http", "sse"]


@dataclass(eq=False, slots=True)
class Session:
    """`peer` is what the bridge knows of the client; `subject`: the authenticated subject that
    opened it (None without authentication), the only one that may use it; `stream_open`: a GET
    stream is attached (streamable HTTP allows one at a time); `replay`: the events its streams
    sent, for `Last-Event-ID` (streamable HTTP with resumption on; None otherwise)."""

    id: str
    peer: Peer
    transport: Transport
    protocol_version: str
    capacity: int
    subject: str | None = None
    max_bytes: int = DEFAULT_MAX_BYTES
    last_active: float = field(default_factory=time.monotonic)
    stream_open: bool = False
    replay: ReplayLog | None = None

    def touch(self) -> None:
        self.last_active = time.monotonic()

    def new_mailbox(self) -> Mailbox:
        mailbox = Mailbox(capacity=self.capacity, max_bytes=self.max_bytes)
        self.peer.mailbox = mailbox
        return mailbox


class SessionRegistry:
    def __init__(
        self,
        bridge: StdioBridge,
        *,
        sharing: SessionSharing,
        metrics: ProxyMetrics,
        capacity: int,
        idle_timeout: float,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_sessions: int = 1000,
        max_per_subject: int = 50,
    ) -> None:
        self._bridge = bridge
        self.sharing = sharing
        self._metrics = metrics
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._idle_timeout = idle_timeout
        self._max_sessions = max_sessions
        self._max_per_subject = max_per_subject
        self._sessions: dict[str, Session] = {}
        self._per_subject: Counter[str | None] = Counter()
        """Open sessions by subject; always agrees with `_sessions`."""

    def __len__(self) -> int:
        return len(self._sessions)

    async def create(
        self,
        *,
        transport: Transport,
        protocol_version: str,
        capabilities: dict[str, object],
        subject: str | None = None,
    ) -> Session:
        """A new session, its record stored first; `SessionLimit` when the subject or the proxy
        is at its cap, `SessionStoreUnavailable` when the record cannot be stored."""
        check_session_caps(
            self._per_subject, subject, total=self._max_sessions, per_subject=self._max_per_subject
        )
        session_id = secrets.token_urlsafe(24)
        record = SessionRecord(
            id=session_id,
            kind=transport,
            owner=self.sharing.address,
            subject=subject,
            era=protocol_version,
            created=time.time(),
            state=initial_state(dict(capabilities)),
        )
        await self.sharing.create(record)
        return self._open(session_id, transport, protocol_version, capabilities, subject)

    def adopt(self, record: SessionRecord, *, capabilities: dict[str, object]) -> Session:
        """The session another replica opened, held here from now on (its record is already
        claimed); `SessionLimit` as for `create`."""
        check_session_caps(
            self._per_subject,
            record.subject,
            total=self._max_sessions,
            per_subject=self._max_per_subject,
        )
        return self._open(record.id, "streamable-http", record.era, capabilities, record.subject)

    def _open(
        self,
        session_id: str,
        transport: Transport,
        protocol_version: str,
        capabilities: dict[str, object],
        subject: str | None,
    ) -> Session:
        peer = Peer(key=session_id, capabilities=dict(capabilities))
        session = Session(
            session_id,
            peer,
            transport,
            protocol_version,
            self._capacity,
            subject=subject,
            max_bytes=self._max_bytes,
        )
        self._sessions[session_id] = session
        self._per_subject[subject] += 1
        self._bridge.attach(peer)
        self._metrics.sessions.set(len(self._sessions))
        return session

    def get(self, session_id: str | None) -> Session | None:
        session = self._sessions.get(session_id) if session_id else None
        if session is not None:
            session.touch()
        return session

    def close(self, session: Session, *, reason: str, keep_record: bool = False) -> None:
        """End the session here; its record goes too unless `keep_record` (shutdown)."""
        if self._sessions.pop(session.id, None) is None:
            return
        if not keep_record:
            self.sharing.forget(session.id)
        self._per_subject[session.subject] -= 1
        if self._per_subject[session.subject] <= 0:
            del self._per_subject[session.subject]
        self._bridge.detach(session.peer, reason=reason)
        self._metrics.sessions.set(len(self._sessions))

    def close_all(self, *, reason: str) -> None:
        """Shutdown: the sessions end here, their records stay for the other replicas."""
        for session in list(self._sessions.values()):
            self.close(session, reason=reason, keep_record=True)

    def ids(self) -> list[str]:
        return list(self._sessions)

    def close_streams(self) -> None:
        """End every session's open stream (GET or HTTP+SSE), keeping the sessions."""
        for session in self._sessions.values():
            if session.peer.mailbox is not None:
                session.peer.mailbox.close()

    def sweep(self) -> int:
        """Close sessions idle past the timeout (an open stream counts as activity)."""
        cutoff = time.monotonic() - self._idle_timeout
        stale = [s for s in self._sessions.values() if s.last_active < cutoff and not s.stream_open]
        for session in stale:
            self.close(session, reason="idle")
        return len(stale)
