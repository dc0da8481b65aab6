"""Server-sent events: framing what we send, parsing what an HTTP backend sends.

Pure: bytes in, bytes out. `data` lines are split on newlines (JSON we encode has none); a
comment line keeps idle connections and intermediaries from timing the stream out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

KEEPALIVE: Final = b": keep-alive\n\n"

SSE_HEADERS: Final = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}
"""Headers that keep every hop from buffering the stream."""


def prefers_event_stream(accept: str) -> bool:
    """Whether an `Accept` header ranks `text/event-stream` above `application/json`.

    A higher q-value wins; at equal q-values the type listed first does (the order in which
    the client named them is the only preference it expressed). A client that accepts both
    but names JSON first gets the cheaper plain-JSON answer whenever nothing precedes it.
    """
    ranks: dict[str, tuple[float, int]] = {}
    for position, item in enumerate(accept.split(",")):
        media, *parameters = (part.strip() for part in item.split(";"))
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranks.setdefault(media.lower(), (quality, -position))
    stream = ranks.get("text/event-stream")
    if stream is None or stream[0] <= 0:
        return False
    json = ranks.get("application/json")
    return json is None or stream > json


def format_event(data: bytes, *, event: str = "message", event_id: str | None = None) -> bytes:
    parts = [b"event: ", event.encode(), b"\n"]
    if event_id is not None:
        parts += [b"id: ", event_id.encode(), b"\n"]
    for line in data.split(b"\n"):
        parts += [b"data: ", line, b"\n"]
    parts.append(b"\n")
    return b"".join(parts)


@dataclass(slots=True)
class Event:
    event: str = "message"
    data: str = ""
    id: str | None = None
    raw: bytes = b""
    """The event exactly as received, for forwarding unchanged."""


@dataclass(slots=True)
class EventParser:
    """Incremental SSE parser: feed chunks, get complete events (comments are dropped)."""

    _buffer: bytes = b""
    _pending: list[bytes] = field(default_factory=list)

    def feed(self, chunk: bytes) -> list[Event]:
        self._buffer += chunk
        events: list[Event] = []
        while True:
            index = self._buffer.find(b"\n")
            if index < 0:
                return events
            line = self._buffer[: index + 1]
            self._buffer = self._buffer[index + 1 :]
            stripped = line.rstrip(b"\r\n")
            if stripped:
                self._pending.append(line)
                continue
            if self._pending:
                event = _build(self._pending, line)
                self._pending = []
                if event is not None:
                    events.append(event)


def _build(lines: list[bytes], terminator: bytes) -> Event | None:
    event = Event(raw=b"".join(lines) + terminator)
    data: list[str] = []
    seen_field = False
    for raw in lines:
        text = raw.rstrip(b"\r\n").decode("utf-8", "replace")
        if text.startswith(":"):
            continue
        name, _, value = text.partition(":")
        value = value.removeprefix(" ")
        seen_field = True
        if name == "event":
            event.event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event.id = value
    if not seen_field:
        return None
    event.data = "\n".join(data)
    return event
