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

Across replicas (`sessionStorage.type: redis`) every event is also handed to a `sink` that keeps
it in the shared store, packed with the id of the request whose stream it is on (`pack_event`),
so that a replica adopting the session can replay a stream and end a request stream whose
request died with its replica. Event ids stay unique across replicas: a session's log on the
replica that adopted it for the n-th time numbers its streams from `n * STREAMS_PER_EPOCH + 1`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from dataclasses import dataclass
from typing import Final, Protocol

from moorage_proxyrunner.protocol.jsonrpc import Json, RequestId

MAX_BYTES: Final = 1024 * 1024
"""Bytes of events kept per session at most (the events stay in memory while the client reads
on; a session that was sent more than this keeps only its newest events)."""
STREAMS_PER_EPOCH: Final = 1_000_000_000
"""Stream numbers each holder of a session has to itself (a session adopted n times numbers
its streams from `n * STREAMS_PER_EPOCH + 1`), so no two replicas mint the same event id."""


class EventSink(Protocol):
    """Where a session's log copies what another replica needs to resume its streams."""

    def request_opened(self, stream: str, request_id: RequestId) -> None:
        """A stream answering request `request_id` opened (it is in flight until closed)."""

    def event(self, stream: str, event_id: str, packed: bytes) -> None:
        """An event was recorded (`pack_event`'s bytes)."""

    def request_closed(self, stream: str) -> None:
        """A request's stream closed (its response, if any, was recorded before)."""


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


def stream_of(event_id: str) -> str | None:
    """The stream an event id this proxy minted belongs to, as the store names it."""
    parsed = parse_event_id(event_id)
    return None if parsed is None else str(parsed[0])


@dataclass(frozen=True, slots=True)
class Packed:
    """An event as the shared store keeps it: the request whose stream it is on (None: the GET
    stream), whether it is that request's response, and the event's data."""

    request_id: RequestId | None
    final: bool
    data: bytes


def pack_event(request_id: RequestId | None, data: bytes, *, final: bool) -> bytes:
    """One JSON line naming the request and whether this is its response, then the data (an
    encoded JSON-RPC message holds no raw newline)."""
    head = json.dumps([request_id, final], separators=(",", ":")).encode()
    return head + b"\n" + data


def unpack_event(packed: bytes) -> Packed | None:
    """What `pack_event` packed; None for anything else."""
    head, sep, data = packed.partition(b"\n")
    if not sep:
        return None
    try:
        fields: Json = json.loads(head)
    except ValueError:
        return None
    if not isinstance(fields, list) or len(fields) != 2 or not isinstance(fields[1], bool):
        return None
    request_id = fields[0]
    if request_id is not None and not isinstance(request_id, (str, int)):
        return None
    return Packed(request_id, fields[1], data)


class ReplayLog:
    """Events of one session, oldest first, bounded in number and bytes.

    Invariants: `_events` is ordered by `sequence` (one counter for the whole session), holds
    at most `window` events and at most `max_bytes` of data (beyond either, the oldest go);
    `_open` holds the streams that may still get events; `standalone` is the latest GET
    stream; `_changed` is set and replaced
    whenever an event is recorded or a stream closes, waking whoever replays a live stream.
    """

    def __init__(
        self, *, window: int, max_bytes: int, epoch: int = 0, sink: EventSink | None = None
    ) -> None:
        self.window = window
        self.max_bytes = max_bytes
        self.sink = sink
        self._events: deque[Recorded] = deque()
        self._bytes = 0
        self._streams = itertools.count(epoch * STREAMS_PER_EPOCH + 1)
        self._requests: dict[int, RequestId] = {}
        """The request each open request stream answers (for the store's copy)."""
        self._sequence = itertools.count(1)
        self._open: set[int] = set()
        self._changed = asyncio.Event()
        self.standalone: int | None = None

    def open_stream(self, *, standalone: bool = False, request_id: RequestId | None = None) -> int:
        """A new stream's id; `standalone`: the session's GET stream (the latest one is the
        one a client can resume as such); `request_id`: the request a POST stream answers."""
        stream = next(self._streams)
        self._open.add(stream)
        if standalone:
            self.standalone = stream
        elif request_id is not None:
            self._requests[stream] = request_id
            if self.sink is not None:
                self.sink.request_opened(str(stream), request_id)
        return stream

    def close_stream(self, stream: int) -> None:
        self._open.discard(stream)
        if self._requests.pop(stream, None) is not None and self.sink is not None:
            self.sink.request_closed(str(stream))
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
        if self.sink is not None:
            packed = pack_event(self._requests.get(stream), data, final=final)
            self.sink.event(str(stream), event.event_id, packed)
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
