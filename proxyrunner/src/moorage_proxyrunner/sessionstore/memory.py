"""Sessions in the proxy's own memory (`sessionStorage.type: memory`): one replica, today's
behaviour. Bounded: at most `max_sessions` records (least recently used dropped first, as an
idle one would be) and `resume_window` events per session."""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping

from moorage_proxyrunner.sessionstore.records import Json, SessionRecord, check_record


class MemoryStore:
    def __init__(
        self,
        *,
        max_sessions: int,
        resume_window: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_sessions = max_sessions
        self._resume_window = resume_window
        self._clock = clock
        self._records: OrderedDict[str, tuple[SessionRecord, float, float]] = OrderedDict()
        """Each session: its record, its idle timeout, when it was last used."""
        self._events: dict[str, deque[tuple[str, str, bytes]]] = {}
        self._alive: dict[str, float] = {}
        self._keys: dict[str, bytes] = {}

    @property
    def shared(self) -> bool:
        return False

    async def create(self, record: SessionRecord, *, idle_timeout: float) -> None:
        check_record(record)
        self._records[record.id] = (record, idle_timeout, self._clock())
        self._records.move_to_end(record.id)
        while len(self._records) > self._max_sessions:
            dropped, _ = self._records.popitem(last=False)
            self._events.pop(dropped, None)

    def _live(self, session_id: str) -> SessionRecord | None:
        entry = self._records.get(session_id)
        if entry is None:
            return None
        record, idle_timeout, used = entry
        now = self._clock()
        if now - used > idle_timeout:
            del self._records[session_id]
            self._events.pop(session_id, None)
            return None
        self._records[session_id] = (record, idle_timeout, now)
        self._records.move_to_end(session_id)
        return record

    def _replace(self, record: SessionRecord) -> None:
        _, idle_timeout, used = self._records[record.id]
        self._records[record.id] = (record, idle_timeout, used)

    async def load(self, session_id: str) -> SessionRecord | None:
        return self._live(session_id)

    async def set_state(self, session_id: str, changes: Mapping[str, Json | None]) -> None:
        record = self._live(session_id)
        if record is None:
            return
        state = dict(record.state)
        for key, value in changes.items():
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
        updated = dataclasses.replace(record, state=state)
        check_record(updated)
        self._replace(updated)

    async def set_era(self, session_id: str, era: str) -> None:
        record = self._live(session_id)
        if record is not None:
            self._replace(dataclasses.replace(record, era=era))

    async def claim(self, session_id: str, *, expected_owner: str, owner: str) -> bool:
        record = self._live(session_id)
        if record is None or record.owner != expected_owner:
            return False
        self._replace(dataclasses.replace(record, owner=owner))
        return True

    async def release(self, owner: str) -> int:
        released = 0
        for record, _, _ in list(self._records.values()):
            if record.owner == owner:
                self._replace(dataclasses.replace(record, owner=""))
                released += 1
        return released

    async def delete(self, session_id: str) -> None:
        self._records.pop(session_id, None)
        self._events.pop(session_id, None)

    async def append_event(self, session_id: str, stream: str, event_id: str, data: bytes) -> None:
        if session_id not in self._records or self._resume_window <= 0:
            return
        events = self._events.setdefault(session_id, deque(maxlen=self._resume_window))
        events.append((stream, event_id, data))

    async def events_after(
        self, session_id: str, stream: str, event_id: str
    ) -> list[tuple[str, bytes]] | None:
        kept = [(i, d) for s, i, d in self._events.get(session_id, ()) if s == stream]
        ids = [i for i, _ in kept]
        if event_id not in ids:
            return None
        return kept[ids.index(event_id) + 1 :]

    async def shared_key(self, name: str) -> bytes:
        return self._keys.setdefault(name, secrets.token_bytes(32))

    async def heartbeat(self, address: str, *, ttl: float) -> None:
        self._alive[address] = self._clock() + ttl

    async def is_alive(self, address: str) -> bool:
        return self._alive.get(address, float("-inf")) > self._clock()

    async def close(self) -> None:
        self._records.clear()
        self._events.clear()
