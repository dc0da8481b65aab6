"""The Redis session store against a real `redis-server`: every method, two stores (two
replicas) seeing the same sessions, one winner among concurrent claims, expiry, the events
window, a password and key prefixes keeping stores apart, records this proxy did not write
refused, and Redis going away giving `SessionStoreUnavailable` at once (never a hang) until it
is back."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from testkit.redisserver import RedisServer, running_redis, running_sentinel, through_sentinel
from testkit.sessionstores import check_events_window

from moorage_api.runconfig import RunConfigRedis
from moorage_proxyrunner.policy.ratelimit import subject_key
from moorage_proxyrunner.policy.redisbuckets import RedisBuckets
from moorage_proxyrunner.policy.tokenbuckets import BucketLimit
from moorage_proxyrunner.sessionstore import redisconn
from moorage_proxyrunner.sessionstore.records import RecordError, SessionRecord, encode_record
from moorage_proxyrunner.sessionstore.redisconn import RedisSettingError
from moorage_proxyrunner.sessionstore.redisstore import RedisStore, open_redis_store, session_hash
from moorage_proxyrunner.sessionstore.store import SessionStoreUnavailable

PREFIX = "moorage:test:sess:"
PASSWORD = "s3cret-for-session-tests"
WINDOW = 4


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


def redis_settings(server: RedisServer, **changes: Any) -> RunConfigRedis:
    data: dict[str, Any] = {"address": server.address, "key_prefix": PREFIX, **changes}
    return RunConfigRedis.model_validate(data)


@pytest_asyncio.fixture
async def stores(redis_server: RedisServer) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    """Two replicas' stores on one Redis."""
    first = open_redis_store(redis_settings(redis_server), resume_window=WINDOW)
    second = open_redis_store(redis_settings(redis_server), resume_window=WINDOW)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


@pytest_asyncio.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[Redis]:
    host, port = redis_server.address.split(":")
    client = Redis(host=host, port=int(port))
    try:
        yield client
    finally:
        await client.aclose()


def record(
    session_id: str = "s1", *, owner: str = "10.0.0.1:8080", **changes: Any
) -> SessionRecord:
    made = SessionRecord(session_id, "streamable-http", owner, "alice", "2025-06-18", 1.5)
    return dataclasses.replace(made, **changes)


async def test_every_method_of_the_store(stores: tuple[RedisStore, RedisStore]) -> None:
    store, _ = stores
    assert store.shared
    assert await store.load("s1") is None
    await store.create(
        record(state={"target": "http://a/mcp", "caps": {"x": [1]}}), idle_timeout=60
    )
    assert await store.load("s1") == record(state={"target": "http://a/mcp", "caps": {"x": [1]}})
    await store.set_state("s1", {"target": None, "level": "debug"})
    await store.set_era("s1", "2026-07-28")
    loaded = await store.load("s1")
    assert loaded == record(era="2026-07-28", state={"caps": {"x": [1]}, "level": "debug"})
    await store.set_state("unknown", {"a": 1})
    await store.set_era("unknown", "x")
    assert await store.load("unknown") is None
    assert await store.claim("s1", expected_owner="10.0.0.1:8080", owner="10.0.0.2:8080")
    assert not await store.claim("s1", expected_owner="10.0.0.1:8080", owner="10.0.0.3:8080")
    assert not await store.claim("unknown", expected_owner="", owner="10.0.0.3:8080")
    await store.append_event("s1", "main", "1", b"data: one\n\n")
    await store.append_event("s1", "main", "2", b"\x00\xff binary")
    assert await store.events_after("s1", "main", "1") == [("2", b"\x00\xff binary")]
    key = await store.shared_key("request-state")
    assert len(key) == 32
    assert await store.shared_key("request-state") == key
    assert await store.shared_key("other") != key
    assert not await store.is_alive("10.0.0.2:8080")
    await store.heartbeat("10.0.0.2:8080", ttl=5)
    assert await store.is_alive("10.0.0.2:8080")
    assert await store.release("10.0.0.2:8080") == 1
    released = await store.load("s1")
    assert released is not None
    assert released.owner == ""
    await store.delete("s1")
    assert await store.load("s1") is None
    assert await store.events_after("s1", "main", "1") is None


async def test_a_record_that_cannot_be_stored_is_refused(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    store, _ = stores
    with pytest.raises(RecordError):
        await store.create(record(kind="websocket"), idle_timeout=60)
    await store.create(record(), idle_timeout=60)
    with pytest.raises(RecordError):
        await store.set_state("s1", {"blob": "x" * 70_000})
    assert await store.load("s1") == record()


async def test_two_replicas_see_the_same_sessions(stores: tuple[RedisStore, RedisStore]) -> None:
    first, second = stores
    await first.create(record("shared", state={"n": 1}), idle_timeout=60)
    await second.set_state("shared", {"n": 2})
    await first.append_event("shared", "main", "7", b"seven")
    await first.append_event("shared", "main", "8", b"eight")
    assert await second.events_after("shared", "main", "7") == [("8", b"eight")]
    assert await second.load("shared") == record("shared", state={"n": 2})
    assert await first.shared_key("k") == await second.shared_key("k")
    await first.heartbeat("10.0.0.1:8080", ttl=5)
    assert await second.is_alive("10.0.0.1:8080")
    await second.delete("shared")
    assert await first.load("shared") is None


async def test_of_twenty_concurrent_claims_one_wins(stores: tuple[RedisStore, RedisStore]) -> None:
    first, second = stores
    await first.create(record(owner="10.0.0.9:8080"), idle_timeout=60)
    claimants = [f"10.0.1.{n}:8080" for n in range(20)]
    results = await asyncio.gather(
        *(
            (first, second)[n % 2].claim("s1", expected_owner="10.0.0.9:8080", owner=owner)
            for n, owner in enumerate(claimants)
        )
    )
    assert sum(results) == 1
    winner = claimants[results.index(True)]
    loaded = await second.load("s1")
    assert loaded is not None
    assert loaded.owner == winner
    # The old owner no longer releases it; the winner does.
    assert await first.release("10.0.0.9:8080") == 0
    assert await first.release(winner) == 1


async def test_an_idle_session_and_its_events_expire_and_load_restarts_the_timeout(
    stores: tuple[RedisStore, RedisStore], raw: Redis
) -> None:
    store, _ = stores
    await store.create(record(), idle_timeout=0.6)
    await store.append_event("s1", "main", "1", b"x")
    for _ in range(3):
        await asyncio.sleep(0.35)
        assert await store.load("s1") is not None
    await asyncio.sleep(0.9)
    assert await store.load("s1") is None
    assert not await raw.exists(PREFIX + "ev:" + session_hash("s1"))
    assert await store.events_after("s1", "main", "1") is None


async def test_events_are_kept_per_stream_within_the_window(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    await check_events_window(stores[0], record())


async def test_a_session_id_never_shapes_a_key(
    stores: tuple[RedisStore, RedisStore], raw: Redis
) -> None:
    store, _ = stores
    odd = "../sess:* {x} \u00e9"
    await store.create(record(odd), idle_timeout=60)
    assert await store.load(odd) == record(odd)
    keys = {k.decode() for k in await raw.keys("*")}
    assert all(k.startswith(PREFIX) for k in keys)
    assert PREFIX + "sess:" + session_hash(odd) in keys
    assert not any(odd in k for k in keys)


async def test_what_this_proxy_did_not_write_is_unavailable_never_served(
    stores: tuple[RedisStore, RedisStore], raw: Redis
) -> None:
    store, _ = stores
    await raw.hset(PREFIX + "sess:" + session_hash("bad"), mapping={"id": "bad", "kind": "?"})
    with pytest.raises(SessionStoreUnavailable, match="did not write"):
        await store.load("bad")
    # Another session's record under this session's key: refused, not shown.
    other = {**encode_record(record("other")), "~idle": "60000"}
    await raw.hset(PREFIX + "sess:" + session_hash("mine"), mapping=other)
    with pytest.raises(SessionStoreUnavailable):
        await store.load("mine")
    await raw.hset(PREFIX + "sess:" + session_hash("bin"), mapping={"id": b"\xff\xfe"})
    with pytest.raises(SessionStoreUnavailable):
        await store.load("bin")
    await store.create(record("ev"), idle_timeout=60)
    await raw.xadd(PREFIX + "ev:" + session_hash("ev"), {"x": "y"})
    with pytest.raises(SessionStoreUnavailable):
        await store.events_after("ev", "main", "1")
    await raw.set(PREFIX + "key:short", b"abc")
    with pytest.raises(SessionStoreUnavailable):
        await store.shared_key("short")


async def test_key_prefixes_keep_two_proxies_apart(redis_server: RedisServer) -> None:
    team_a = open_redis_store(redis_settings(redis_server, key_prefix="a:"), resume_window=4)
    team_b = open_redis_store(redis_settings(redis_server, key_prefix="b:"), resume_window=4)
    try:
        await team_a.create(record(owner="10.0.0.1:80"), idle_timeout=60)
        await team_a.append_event("s1", "main", "1", b"x")
        await team_a.heartbeat("10.0.0.1:80", ttl=5)
        assert await team_b.load("s1") is None
        assert await team_b.events_after("s1", "main", "1") is None
        assert not await team_b.is_alive("10.0.0.1:80")
        assert not await team_b.claim("s1", expected_owner="10.0.0.1:80", owner="x:1")
        assert await team_b.release("10.0.0.1:80") == 0
        assert await team_a.shared_key("k") != await team_b.shared_key("k")
        loaded = await team_a.load("s1")
        assert loaded is not None
        assert loaded.owner == "10.0.0.1:80"
    finally:
        await team_a.close()
        await team_b.close()


async def test_a_password_is_read_from_the_named_variable_and_needed(tmp_path: Path) -> None:
    with running_redis(tmp_path, password=PASSWORD) as server:
        config = redis_settings(server, password={"env": "SESSION_REDIS_PASSWORD"})
        with pytest.raises(RedisSettingError, match="SESSION_REDIS_PASSWORD is not set"):
            open_redis_store(config, resume_window=4, environ={})
        store = open_redis_store(
            config, resume_window=4, environ={"SESSION_REDIS_PASSWORD": PASSWORD}
        )
        without = open_redis_store(redis_settings(server), resume_window=4)
        try:
            await store.create(record(), idle_timeout=60)
            assert await store.load("s1") == record()
            with pytest.raises(SessionStoreUnavailable, match=r"(?i)auth"):
                await without.load("s1")
        finally:
            await store.close()
            await without.close()


async def test_redis_going_away_and_coming_back(
    redis_server: RedisServer,
    stores: tuple[RedisStore, RedisStore],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redisconn, "RETRY_INTERVAL", 0.3)
    store, _ = stores
    await store.create(record(), idle_timeout=600)
    redis_server.stop()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(SessionStoreUnavailable, match="session storage"):
        await store.load("s1")
    assert loop.time() - started < 1.5
    # Within the retry interval the store answers at once, without trying Redis.
    started = loop.time()
    for operation in (
        store.load("s1"),
        store.heartbeat("10.0.0.1:80", ttl=5),
        store.claim("s1", expected_owner="", owner="x:1"),
    ):
        with pytest.raises(SessionStoreUnavailable, match="moments ago"):
            await operation
    assert loop.time() - started < 0.1
    redis_server.start()
    await asyncio.sleep(0.4)
    # The server came back empty (no persistence): the store works again.
    assert await store.load("s1") is None
    await store.create(record(), idle_timeout=600)
    assert await store.load("s1") == record()


async def test_the_rate_limit_buckets_share_the_stores_client(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    store, _ = stores
    buckets = RedisBuckets(store.client, key_prefix=store.key_prefix, close_client=False)
    assert (await buckets.take([subject_key("a")], [BucketLimit(60, 1)])).allowed
    await buckets.close()
    await store.create(record(), idle_timeout=60)
    assert await store.load("s1") == record()


async def test_the_primary_is_found_through_sentinel(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with running_sentinel(redis_server, tmp_path) as sentinel:
        config = redis_settings(redis_server, **through_sentinel(sentinel))
        found = open_redis_store(config, resume_window=4)
        direct = open_redis_store(redis_settings(redis_server), resume_window=4)
        try:
            await found.create(record(), idle_timeout=60)
            assert await direct.load("s1") == record()
        finally:
            await found.close()
            await direct.close()


async def test_a_command_that_got_through_ends_the_pause_after_a_failure(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    """A command already under way when another one failed reaches Redis: Redis is back, so the
    store must not keep refusing for the rest of its pause."""
    store, _ = stores
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "done"

    async def failing() -> str:
        raise ConnectionError("reset by peer")

    under_way = asyncio.create_task(store._call("load", slow))
    await asyncio.sleep(0)
    with pytest.raises(SessionStoreUnavailable):
        await store._call("load", failing)
    with pytest.raises(SessionStoreUnavailable, match="moments ago"):
        await store.load("s1")
    release.set()
    assert await under_way == "done"
    assert await store.load("s1") is None


async def test_a_burst_of_commands_waits_its_turn_instead_of_failing(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    """redis-py's pool refuses a command beyond its 100 connections ("Too many connections"),
    which the store would take for Redis being down; 300 sessions at once must all be served."""
    store, _ = stores
    records = [
        SessionRecord(f"burst-{i}", "streamable-http", "10.0.0.1:8080", None, "", 1.0)
        for i in range(300)
    ]
    await asyncio.gather(*(store.create(r, idle_timeout=60) for r in records))
    loaded = await asyncio.gather(*(store.load(r.id) for r in records))
    assert loaded == records
    assert redisconn.MAX_COMMANDS < 100
