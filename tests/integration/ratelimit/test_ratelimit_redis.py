"""The Redis bucket store against a real `redis-server`: the Lua script agrees with the pure
token bucket, keys sit under the prefix and expire, two stores (two replicas) share a bucket,
a password is required and used, TLS verifies the server with the configured CA, Sentinel finds
the primary, and Redis going away gives `StoreUnavailable` (never a crash) until it is back,
when limits work again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from conftest import PASSWORD
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from testkit.redisserver import (
    RedisServer,
    running_redis,
    running_sentinel,
    through_sentinel,
    write_tls_files,
)

from moorage_api.runconfig import RunConfigRedis
from moorage_proxyrunner.policy import redisbuckets
from moorage_proxyrunner.policy.ratelimit import StoreUnavailable, subject_key, tool_key
from moorage_proxyrunner.policy.redisbuckets import RedisBuckets, open_redis_buckets
from moorage_proxyrunner.policy.tokenbuckets import BucketLimit, BucketState, take
from moorage_proxyrunner.sessionstore.redisconn import RedisSettingError

PREFIX = "moorage:test:time:"


def redis_settings(server: RedisServer, **changes: Any) -> RunConfigRedis:
    data: dict[str, Any] = {"address": server.address, "key_prefix": PREFIX, **changes}
    return RunConfigRedis.model_validate(data)


@pytest_asyncio.fixture
async def buckets(redis_server: RedisServer) -> AsyncIterator[RedisBuckets]:
    store = open_redis_buckets(redis_settings(redis_server))
    try:
        yield store
    finally:
        await store.close()


async def raw(server: RedisServer, password: str | None = None) -> Redis:
    host, port = server.address.split(":")
    return Redis(host=host, port=int(port), password=password)


async def test_a_fresh_bucket_allows_burst_then_refuses_with_the_wait(
    buckets: RedisBuckets,
) -> None:
    limit = [BucketLimit(requests_per_minute=60, burst=3)]
    key = [subject_key("alice")]
    for _ in range(3):
        assert (await buckets.take(key, limit)).allowed
    verdict = await buckets.take(key, limit)
    assert not verdict.allowed
    assert verdict.blocking == 0
    # One token a second; a few milliseconds have passed since the third take.
    assert 900_000 < verdict.retry_after_us <= 1_000_000


async def test_several_buckets_are_taken_from_together_or_not_at_all(
    buckets: RedisBuckets,
) -> None:
    subject = BucketLimit(requests_per_minute=60, burst=5)
    tool = BucketLimit(requests_per_minute=60, burst=1)
    keys = [subject_key("alice"), tool_key("get_time", "alice", per_subject=True)]
    assert (await buckets.take(keys, [subject, tool])).allowed
    refused = await buckets.take(keys, [subject, tool])
    assert not refused.allowed
    assert refused.blocking == 1
    # The subject's bucket lost one token, not two: four more requests fit.
    for _ in range(4):
        assert (await buckets.take(keys[:1], [subject])).allowed
    assert not (await buckets.take(keys[:1], [subject])).allowed


async def test_keys_are_under_the_prefix_and_expire_when_the_bucket_would_be_full(
    redis_server: RedisServer, buckets: RedisBuckets
) -> None:
    await buckets.take([subject_key("alice")], [BucketLimit(requests_per_minute=60, burst=2)])
    client = await raw(redis_server)
    try:
        keys = [k.decode() for k in await client.keys("*")]
        assert keys == [PREFIX + subject_key("alice")]
        ttl = await client.pttl(keys[0])
        # Two tokens at one a second: full again within 2 s, plus a second of slack.
        assert 0 < ttl <= 3000
    finally:
        await client.aclose()


async def test_two_replicas_share_one_bucket(redis_server: RedisServer) -> None:
    first = open_redis_buckets(redis_settings(redis_server))
    second = open_redis_buckets(redis_settings(redis_server))
    limit = [BucketLimit(requests_per_minute=1, burst=4)]
    key = [subject_key("alice")]
    try:
        results = [await (first, second)[i % 2].take(key, limit) for i in range(8)]
    finally:
        await first.close()
        await second.close()
    assert [v.allowed for v in results] == [True] * 4 + [False] * 4


async def test_a_password_is_read_from_the_named_variable(redis_with_password: RedisServer) -> None:
    config = redis_settings(redis_with_password, password={"env": "TEST_REDIS_PASSWORD"})
    with pytest.raises(RedisSettingError, match="TEST_REDIS_PASSWORD is not set"):
        open_redis_buckets(config, environ={})
    store = open_redis_buckets(config, environ={"TEST_REDIS_PASSWORD": PASSWORD})
    try:
        assert (await store.take([subject_key("a")], [BucketLimit(60, 1)])).allowed
    finally:
        await store.close()


async def test_a_missing_password_is_unavailable_not_a_crash(
    redis_with_password: RedisServer,
) -> None:
    store = open_redis_buckets(redis_settings(redis_with_password))
    try:
        with pytest.raises(StoreUnavailable, match=r"(?i)auth"):
            await store.take([subject_key("a")], [BucketLimit(60, 1)])
    finally:
        await store.close()


async def test_redis_going_away_and_coming_back(
    redis_server: RedisServer, buckets: RedisBuckets, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redisbuckets, "RETRY_INTERVAL", 0.2)
    limit = [BucketLimit(requests_per_minute=60, burst=100)]
    key = [subject_key("alice")]
    assert (await buckets.take(key, limit)).allowed
    redis_server.stop()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(StoreUnavailable):
        await buckets.take(key, limit)
    # Within the retry interval, the store answers at once without trying Redis.
    with pytest.raises(StoreUnavailable, match="not retried yet"):
        await buckets.take(key, limit)
    assert loop.time() - started < 2.0
    redis_server.start()
    await asyncio.sleep(0.3)
    assert (await buckets.take(key, limit)).allowed


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    limit=st.builds(
        BucketLimit,
        requests_per_minute=st.integers(min_value=1, max_value=1_000_000),
        burst=st.integers(min_value=1, max_value=100_000),
    ),
    fraction=st.fractions(min_value=0, max_value=1),
    ahead_us=st.integers(min_value=10_000_000, max_value=10**9),
)
async def test_the_lua_script_agrees_with_the_pure_bucket(
    redis_server: RedisServer, limit: BucketLimit, fraction: Fraction, ahead_us: int
) -> None:
    """A stored time ahead of the server's (a clock that stepped back) refills nothing, so the
    script's answer is exact and must equal `tokenbuckets.take`'s: verdict, wait, new level."""
    level = int(limit.capacity * fraction)
    client = await raw(redis_server)
    store = RedisBuckets(client, key_prefix=PREFIX)
    key = subject_key("prop")
    try:
        seconds, micros = await client.time()
        at_us = seconds * 1_000_000 + micros + ahead_us
        await client.hset(PREFIX + key, mapping={"l": str(level), "t": str(at_us)})
        verdict = await store.take([key], [limit])
        expected_states, expected = take([BucketState(level, at_us)], [limit], now_us=at_us - 1)
        assert verdict == expected
        stored = await client.hmget(PREFIX + key, ["l", "t"])
        if expected_states is None:
            assert [int(v) for v in stored] == [level, at_us]
        else:
            assert [int(v) for v in stored] == [expected_states[0].level, at_us]
            ttl = await client.pttl(PREFIX + key)
            assert 0 < ttl <= limit.full_after_us // 1000 + 1 + 1000
    finally:
        await client.delete(PREFIX + key)
        await client.aclose()


async def test_tls_with_the_ca_from_the_runconfig(tmp_path: Path) -> None:
    files = write_tls_files(tmp_path / "tls", hosts=["127.0.0.1", "localhost"])
    with running_redis(tmp_path, tls=files) as server:
        plain = open_redis_buckets(redis_settings(server))
        verified = open_redis_buckets(
            redis_settings(server, tls={"enabled": True}), ca_data=files.ca.read_text()
        )
        unknown_ca = open_redis_buckets(redis_settings(server, tls={"enabled": True}))
        try:
            assert (await verified.take([subject_key("a")], [BucketLimit(60, 1)])).allowed
            assert not (await verified.take([subject_key("a")], [BucketLimit(60, 1)])).allowed
            # Without TLS, or with a CA that did not sign the server's certificate: unavailable.
            for store in (plain, unknown_ca):
                with pytest.raises(StoreUnavailable):
                    await store.take([subject_key("b")], [BucketLimit(60, 1)])
        finally:
            for store in (plain, verified, unknown_ca):
                await store.close()


async def test_the_primary_is_found_through_sentinel(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with running_sentinel(redis_server, tmp_path) as sentinel:
        config = redis_settings(redis_server, **through_sentinel(sentinel))
        store = open_redis_buckets(config)
        try:
            assert (await store.take([subject_key("a")], [BucketLimit(60, 1)])).allowed
            assert not (await store.take([subject_key("a")], [BucketLimit(60, 1)])).allowed
        finally:
            await store.close()
        client = await raw(redis_server)
        try:
            assert await client.exists(PREFIX + subject_key("a"))
        finally:
            await client.aclose()
