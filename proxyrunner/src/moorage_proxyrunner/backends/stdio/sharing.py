"""The stdio bridge's legacy sessions in the session store, so that any replica can serve them.

The decisions are `sessionstate`'s; this module does the writing. A session's record is
created before its `initialize` is answered (a store that cannot be reached refuses the session)
and deleted when the session closes. What changes afterwards (its log level, its subscriptions)
and every event of its streams (`front.replaying.EventSink`) is written in the background, in
order, through one bounded queue per session: a slow or unreachable store never holds up a
stream. When the queue is full, or an event cannot be written, the session's later events are no
longer kept and its record says so (`resumable: false`): another replica then refuses to resume
its streams (400, as for an event outside the window) rather than replay them with a gap.

The record is kept from expiring while the session is used here (`touch`, from the sweeper):
requests served by the owner do not read it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

import structlog

from moorage_proxyrunner.backends.stdio.sessionstate import (
    CAPABILITIES,
    RESUMABLE,
    StoredStream,
    in_flight_key,
    resume_from_store,
)
from moorage_proxyrunner.front.replaying import ReplayLog, stream_of
from moorage_proxyrunner.protocol.jsonrpc import RequestId
from moorage_proxyrunner.sessionstore.forwarding import Forwarder
from moorage_proxyrunner.sessionstore.records import Json, RecordError, SessionRecord
from moorage_proxyrunner.sessionstore.store import SessionStore, SessionStoreUnavailable

log = structlog.get_logger(__name__)

WRITES_PER_SESSION: Final = 256
"""Writes a session may have waiting for the store; past this its events are no longer kept."""
STOP_GRACE: Final = 1.0
"""Seconds a stopping replica waits for its sessions' writes to reach the store."""


Write = Callable[[], Awaitable[None]]


@dataclass(eq=False, slots=True)
class _Writes:
    """One session's writes waiting for the store, oldest first. Invariants: `task` drains
    `queue` while it is not empty; once `lossy`, no event of the session is queued again."""

    queue: deque[tuple[Write, bool]] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None
    lossy: bool = False
    flagged: bool = False
    """`resumable: false` reached the store."""


class SessionSharing:
    """Writes the stdio bridge's sessions through a `SessionStore`."""

    def __init__(
        self,
        store: SessionStore,
        *,
        address: str,
        forwarder: Forwarder | None,
        idle_timeout: float,
        on_error: Callable[[str], None] = lambda operation: None,
        writes_per_session: int = WRITES_PER_SESSION,
    ) -> None:
        self.store = store
        self.address = address
        self.forwarder = forwarder
        self._idle_timeout = idle_timeout
        self._on_error = on_error
        self._limit = writes_per_session
        self._writes: dict[str, _Writes] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def shared(self) -> bool:
        """Whether other replicas read what is written here (False: memory, one replica)."""
        return self.store.shared

    def failed(self, operation: str, exc: SessionStoreUnavailable) -> None:
        self._on_error(operation)
        log.warning("session_store_unavailable", operation=operation, error=str(exc))

    async def create(self, record: SessionRecord) -> None:
        """Store a new session's record; `SessionStoreUnavailable` refuses the session.

        Capabilities too large for a record (the client limit is as large as a record's whole
        state) are left out of it: the session is served, and a replica adopting it sees none."""
        try:
            try:
                await self.store.create(record, idle_timeout=self._idle_timeout)
            except RecordError as exc:
                log.warning("session_capabilities_not_kept", session=record.id[:8], error=str(exc))
                state = {k: v for k, v in record.state.items() if k != CAPABILITIES}
                await self.store.create(
                    dataclasses.replace(record, state=state), idle_timeout=self._idle_timeout
                )
        except SessionStoreUnavailable as exc:
            self.failed("create", exc)
            raise

    def log_for(self, session_id: str, *, window: int, max_bytes: int, epoch: int) -> ReplayLog:
        """The session's replay log, copying its events to the store when replicas share it."""
        sink = _Sink(self, session_id) if self.shared else None
        return ReplayLog(window=window, max_bytes=max_bytes, epoch=epoch, sink=sink)

    def update(self, session_id: str, changes: dict[str, Json | None]) -> None:
        """Change keys of the session's state, in the background."""
        self.enqueue(session_id, lambda: self.store.set_state(session_id, changes), event=False)

    def forget(self, session_id: str) -> None:
        """The session closed: drop what is waiting for it and delete its record."""
        writes = self._writes.pop(session_id, None)
        if writes is not None and writes.task is not None:
            writes.task.cancel()
        self._spawn(self._delete(session_id))

    async def _delete(self, session_id: str) -> None:
        try:
            await self.store.delete(session_id)
        except SessionStoreUnavailable as exc:
            # It expires by itself after the idle timeout.
            self.failed("delete", exc)

    async def touch(self, session_ids: Iterable[str]) -> None:
        """Restart the idle timeout of the records of sessions used here, and say at last that
        a session's events were lost when the store could not be told at the time."""
        for session_id in session_ids:
            try:
                await self.store.load(session_id)
                writes = self._writes.get(session_id)
                if writes is not None and writes.lossy and not writes.flagged:
                    await self.store.set_state(session_id, {RESUMABLE: False})
                    writes.flagged = True
            except SessionStoreUnavailable as exc:
                self.failed("touch", exc)
                return

    async def stored_stream(self, record: SessionRecord, last_event: str) -> StoredStream | None:
        """A stream's events after `last_event` from the store (the replica that minted them
        is gone); None when they cannot be replayed exactly."""
        stream = stream_of(last_event)
        if stream is None or record.state.get(RESUMABLE) is False:
            return None
        events = await self.store.events_after(record.id, stream, last_event)
        if events is None:
            return None
        in_flight = record.state.get(in_flight_key(stream))
        return resume_from_store(events, in_flight)

    async def stop(self, *, grace: float = STOP_GRACE) -> None:
        """Shutdown: what is waiting to be written gets `grace` seconds (the last events of
        streams ended by the shutdown let another replica resume them), then is dropped."""
        pending = [w.task for w in self._writes.values() if w.task is not None]
        pending += list(self._tasks)
        if pending:
            await asyncio.wait(pending, timeout=grace)
        for task in pending:
            task.cancel()
        self._writes.clear()

    # ---- the background writes ----

    def enqueue(self, session_id: str, write: Write, *, event: bool) -> None:
        writes = self._writes.setdefault(session_id, _Writes())
        if event and writes.lossy:
            return
        if len(writes.queue) >= self._limit:
            self._lose(session_id, writes, "the session's writes to the store are backed up")
            if event:
                return
        writes.queue.append((write, event))
        if writes.task is None:
            writes.task = asyncio.create_task(self._drain(session_id, writes))

    def _lose(self, session_id: str, writes: _Writes, why: str) -> None:
        """Stop keeping the session's events: resuming its streams elsewhere would miss some."""
        if writes.lossy:
            return
        writes.lossy = True
        writes.queue = deque(item for item in writes.queue if not item[1])
        log.warning("session_events_not_kept", session=session_id[:8], reason=why)

        async def flag() -> None:
            await self.store.set_state(session_id, {RESUMABLE: False})
            writes.flagged = True

        writes.queue.append((flag, False))

    async def _drain(self, session_id: str, writes: _Writes) -> None:
        try:
            while writes.queue:
                write, event = writes.queue.popleft()
                try:
                    await write()
                except SessionStoreUnavailable as exc:
                    self.failed("append_event" if event else "set_state", exc)
                    self._lose(session_id, writes, str(exc))
                except RecordError as exc:
                    # The state would outgrow what a record may hold: it is not kept whole.
                    log.warning("session_state_refused", session=session_id[:8], error=str(exc))
                    self._lose(session_id, writes, str(exc))
        finally:
            writes.task = None
            if not writes.queue and not writes.lossy and self._writes.get(session_id) is writes:
                # Nothing waits and nothing was lost: a closed session leaves nothing behind.
                del self._writes[session_id]

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


@dataclass(slots=True)
class _Sink:
    """One session's `EventSink`: its events and in-flight requests, queued for the store."""

    sharing: SessionSharing
    session_id: str

    def request_opened(self, stream: str, request_id: RequestId) -> None:
        key = in_flight_key(stream)
        self._write(lambda: self.sharing.store.set_state(self.session_id, {key: request_id}))

    def event(self, stream: str, event_id: str, packed: bytes) -> None:
        store = self.sharing.store
        self._write(lambda: store.append_event(self.session_id, stream, event_id, packed))

    def request_closed(self, stream: str) -> None:
        key = in_flight_key(stream)
        self._write(lambda: self.sharing.store.set_state(self.session_id, {key: None}))

    def _write(self, write: Write) -> None:
        self.sharing.enqueue(self.session_id, write, event=True)
