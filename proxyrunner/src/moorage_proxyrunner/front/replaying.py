"""The recent SSE events of one legacy session, so that a client can resume with Last-Event-ID.

Streamable HTTP (2025-11-25) lets a client that lost an SSE stream send `GET` with the id of
the last event it received; the server may replay what came after it on that same stream, and
must not replay another stream's events. The proxy gives every event on a legacy session's
streams (each POST response stream, the GET stream) an id `<stream>-<sequence>` and keeps the
last `window` events (and no more than `max_bytes` of them) per session. A POST stream whose
client went away keeps being recorded until its request is answered, so a resumed stream ends
with the response.

Only the event data is kept (the encoded JSON-RPC message); what is older than the window is
gone, and a client asking for it is told so. No I/O here beyond waking waiters.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass
from typing import Final

MAX_BYTES: Final = 1024 * 1024
"""Bytes of events kept per session at most (the events stay in memory while the client reads
on; a session that was sent more than this keeps only its newest events)."""


@dataclass(frozen=True, slots=True)
class Recorded:
    """One event; `final`: the response that ends its stream."""

    stream: int
    sequence: int
    data: bytes
    final: bool = False

    @property
    def event_id(self) -> str:
        return f"{self.stream}-{self.sequence}"

    @property
    def shown_id(self) -> str | None:
        """The id the event carries on the wire: none for a response, after which its stream
        has nothing left to resume."""
        return None if self.final else self.event_id


def parse_event_id(value: str) -> tuple[int, int] | None:
    """(stream, sequence) of an event id this proxy minted, else None."""
    stream, sep, sequence = value.strip().partition("-")
    if not sep or not stream.isdigit() or not sequence.isdigit():
        return None
    return int(stream), int(sequence)


class ReplayLog:
    """Events of one session, oldest first, bounded in number and bytes.

    Invariants: `_events` is ordered by `sequence` (one counter for the whole session), holds
    at most `window` events and at most `max_bytes` of data (beyond either, the oldest go);
    `_open` holds the streams that may still get events; `standalone` is the latest GET
    stream; `_changed` is set and replaced
    whenever an event is recorded or a stream closes, waking whoever replays a live stream.
    """

    def __init__(self, *, window: int, max_bytes: int) -> None:
        self.window = window
        self.max_bytes = max_bytes
        self._events: deque[Recorded] = deque()
        self._bytes = 0
        self._streams = itertools.count(1)
        self._sequence = itertools.count(1)
        self._open: set[int] = set()
        self._changed = asyncio.Event()
        self.standalone: int | None = None

    def open_stream(self, *, standalone: bool = False) -> int:
        """A new stream's id; `standalone`: the session's GET stream (the latest one is the
        one a client can resume as such)."""
        stream = next(self._streams)
        self._open.add(stream)
        if standalone:
            self.standalone = stream
        return stream

    def close_stream(self, stream: int) -> None:
        self._open.discard(stream)
        self._wake()

    def is_open(self, stream: int) -> bool:
        return stream in self._open

    def record(self, stream: int, data: bytes, *, final: bool = False) -> str | None:
        """Keep one event of `stream`; the id it carries on the wire."""
        event = Recorded(stream, next(self._sequence), data, final)
        self._events.append(event)
        self._bytes += len(data)
        while self._events and (len(self._events) > self.window or self._bytes > self.max_bytes):
            self._bytes -= len(self._events.popleft().data)
        self._wake()
        return event.shown_id

    def after(self, event_id: str) -> tuple[int, list[Recorded]] | None:
        """The stream `event_id` belongs to and its kept events after it; None when the id is
        not one of this session's events still in the window."""
        parsed = parse_event_id(event_id)
        if parsed is None:
            return None
        stream, sequence = parsed
        if not any(e.stream == stream and e.sequence == sequence for e in self._events):
            return None
        return stream, [e for e in self._events if e.stream == stream and e.sequence > sequence]

    def since(self, stream: int, sequence: int) -> list[Recorded]:
        """Kept events of `stream` after `sequence` (for following a live stream)."""
        return [e for e in self._events if e.stream == stream and e.sequence > sequence]

    def watch(self) -> asyncio.Event:
        """An event set by the next recording or closing: take it before reading the log, then
        wait on it, and nothing recorded in between is missed."""
        return self._changed

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


@dataclass(slots=True)
class Journal:
    """One stream's handle on its session's log: records what the stream sends."""

    log: ReplayLog
    stream: int

    def record(self, data: bytes, *, final: bool = False) -> str | None:
        return self.log.record(self.stream, data, final=final)

    def close(self) -> None:
        self.log.close_stream(self.stream)
