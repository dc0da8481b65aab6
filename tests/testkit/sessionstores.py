"""What every `SessionStore` must do with a session's events, checked the same way on each
(memory in the unit tests, Redis in the integration tests)."""

from __future__ import annotations

from moorage_proxyrunner.sessionstore.records import SessionRecord
from moorage_proxyrunner.sessionstore.store import SessionStore


async def check_events_window(store: SessionStore, record: SessionRecord) -> None:
    """`store` keeps the last four events of a session (`resume_window` 4), per stream;
    `record` is stored by this check."""
    await store.create(record, idle_timeout=60)
    session = record.id
    for n in range(1, 6):
        await store.append_event(session, "main", str(n), f"m{n}".encode())
    # Five appended, four kept: "1" has left the window.
    assert await store.events_after(session, "main", "1") is None
    assert await store.events_after(session, "main", "2") == [
        ("3", b"m3"),
        ("4", b"m4"),
        ("5", b"m5"),
    ]
    assert await store.events_after(session, "main", "5") == []
    assert await store.events_after(session, "main", "nope") is None
    assert await store.events_after(session, "other", "3") is None
    await store.append_event(session, "other", "o1", b"o")
    assert await store.events_after(session, "other", "o1") == []
    assert await store.events_after(session, "main", "3") == [("4", b"m4"), ("5", b"m5")]
    # An unknown session keeps nothing.
    await store.append_event("unknown", "main", "1", b"x")
    assert await store.events_after("unknown", "main", "1") is None
