"""`MemoryStore`, one replica's sessions: every method of the store, its bounds (least recently
used dropped past `max_sessions`, the last `resume_window` events kept), idle expiry on a fake
clock, and `claim` as a compare-and-set."""

from __future__ import annotations

import dataclasses

import pytest
from testkit.sessionstores import check_events_window

from moorage_proxyrunner.sessionstore.memory import MemoryStore
from moorage_proxyrunner.sessionstore.records import RecordError, SessionRecord


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(session_id: str = "s1", *, owner: str = "10.0.0.1:8080") -> SessionRecord:
    return SessionRecord(session_id, "streamable-http", owner, "alice", "2025-06-18", 1.0)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> MemoryStore:
    return MemoryStore(max_sessions=3, resume_window=4, clock=clock)


async def test_a_created_session_loads_and_unknown_ones_do_not(store: MemoryStore) -> None:
    assert not store.shared
    await store.create(record(), idle_timeout=60)
    assert await store.load("s1") == record()
    assert await store.load("s2") is None


async def test_a_record_that_cannot_be_stored_is_refused(store: MemoryStore) -> None:
    with pytest.raises(RecordError):
        await store.create(dataclasses.replace(record(), kind="websocket"), idle_timeout=60)
    assert await store.load("s1") is None


async def test_set_state_changes_only_the_keys_given(store: MemoryStore) -> None:
    await store.create(dataclasses.replace(record(), state={"a": 1, "b": [2]}), idle_timeout=60)
    await store.set_state("s1", {"a": None, "c": {"d": "e"}})
    loaded = await store.load("s1")
    assert loaded is not None
    assert loaded.state == {"b": [2], "c": {"d": "e"}}
    await store.set_state("unknown", {"a": 1})
    assert await store.load("unknown") is None


async def test_set_era_records_the_version(store: MemoryStore) -> None:
    await store.create(dataclasses.replace(record(), era=""), idle_timeout=60)
    await store.set_era("s1", "2026-07-28")
    loaded = await store.load("s1")
    assert loaded is not None
    assert loaded.era == "2026-07-28"


async def test_an_idle_session_expires_and_load_restarts_its_timeout(
    store: MemoryStore, clock: Clock
) -> None:
    await store.create(record(), idle_timeout=10)
    clock.now += 9
    assert await store.load("s1") is not None
    clock.now += 9
    assert await store.load("s1") is not None
    clock.now += 10.5
    assert await store.load("s1") is None
    await store.set_state("s1", {"a": 1})
    assert await store.load("s1") is None


async def test_past_max_sessions_the_least_recently_used_is_dropped(store: MemoryStore) -> None:
    for name in ("s1", "s2", "s3"):
        await store.create(record(name), idle_timeout=60)
    await store.append_event("s2", "main", "1", b"x")
    assert await store.load("s1") is not None  # s2 is now the least recently used
    await store.create(record("s4"), idle_timeout=60)
    assert await store.load("s2") is None
    assert await store.events_after("s2", "main", "1") is None
    assert [await store.load(n) is not None for n in ("s1", "s3", "s4")] == [True] * 3


async def test_claim_is_a_compare_and_set_on_the_owner(store: MemoryStore) -> None:
    await store.create(record(owner="a:1"), idle_timeout=60)
    assert not await store.claim("s1", expected_owner="b:1", owner="c:1")
    assert await store.claim("s1", expected_owner="a:1", owner="b:1")
    assert not await store.claim("s1", expected_owner="a:1", owner="c:1")
    loaded = await store.load("s1")
    assert loaded is not None
    assert loaded.owner == "b:1"
    assert not await store.claim("unknown", expected_owner="", owner="b:1")


async def test_release_clears_the_owner_of_that_replicas_sessions_only(store: MemoryStore) -> None:
    await store.create(record("s1", owner="a:1"), idle_timeout=60)
    await store.create(record("s2", owner="a:1"), idle_timeout=60)
    await store.create(record("s3", owner="b:1"), idle_timeout=60)
    assert await store.release("a:1") == 2
    owners = [(await store.load(n)) for n in ("s1", "s2", "s3")]
    assert [r.owner for r in owners if r is not None] == ["", "", "b:1"]
    assert await store.claim("s1", expected_owner="", owner="b:1")
    assert await store.release("a:1") == 0


async def test_delete_forgets_the_session_and_its_events(store: MemoryStore) -> None:
    await store.create(record(), idle_timeout=60)
    await store.append_event("s1", "main", "1", b"x")
    await store.append_event("s1", "main", "2", b"y")
    await store.delete("s1")
    assert await store.load("s1") is None
    assert await store.events_after("s1", "main", "1") is None
    await store.delete("s1")


async def test_events_are_kept_per_stream_within_the_window(store: MemoryStore) -> None:
    await check_events_window(store, record())


async def test_events_of_an_unknown_session_or_with_no_window_are_not_kept(clock: Clock) -> None:
    store = MemoryStore(max_sessions=3, resume_window=0, clock=clock)
    await store.append_event("nobody", "main", "1", b"x")
    assert await store.events_after("nobody", "main", "1") is None
    await store.create(record(), idle_timeout=60)
    await store.append_event("s1", "main", "1", b"x")
    assert await store.events_after("s1", "main", "1") is None


async def test_a_shared_key_is_the_same_for_a_name_and_differs_between_names(
    store: MemoryStore,
) -> None:
    first = await store.shared_key("request-state")
    assert len(first) == 32
    assert await store.shared_key("request-state") == first
    assert await store.shared_key("other") != first


async def test_a_heartbeat_is_alive_until_its_ttl(store: MemoryStore, clock: Clock) -> None:
    assert not await store.is_alive("a:1")
    await store.heartbeat("a:1", ttl=6)
    clock.now += 5.9
    assert await store.is_alive("a:1")
    assert not await store.is_alive("b:1")
    clock.now += 0.2
    assert not await store.is_alive("a:1")


async def test_close_forgets_everything(store: MemoryStore) -> None:
    await store.create(record(), idle_timeout=60)
    await store.close()
    assert await store.load("s1") is None
