"""The process's store and heartbeat: memory by default, bounded by the limits; the heartbeat
keeps the replica alive and outlives a store that cannot be reached; the start-up hands the
same store, address and forwarder to the endpoints it builds."""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import CollectorRegistry

from moorage_api.runconfig import RunConfigSessionStorage
from moorage_core.supervising import TaskSupervisor
from moorage_proxyrunner.backends.reverse.endpoints import HttpEndpoints
from moorage_proxyrunner.config.limits import Limits
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.front.metrics import ProxyMetrics
from moorage_proxyrunner.policy.redisbuckets import RedisBuckets
from moorage_proxyrunner.protocol.pipeline import Pipeline
from moorage_proxyrunner.sessionstore.memory import MemoryStore
from moorage_proxyrunner.sessionstore.opening import keep_alive, open_session_store
from moorage_proxyrunner.sessionstore.records import SessionRecord
from moorage_proxyrunner.sessionstore.redisstore import RedisStore
from moorage_proxyrunner.sessionstore.store import SessionStoreUnavailable
from moorage_proxyrunner.startup.assembly import (
    Backend,
    build_endpoints,
    share_sessions,
    shared_buckets,
)


async def test_memory_storage_is_a_memory_store_bounded_by_the_limits() -> None:
    settings = ProxyRunnerSettings(limits=Limits(max_sessions=2, resume_window=0))
    store = open_session_store(settings)
    assert isinstance(store, MemoryStore)
    for n in range(3):
        record = SessionRecord(f"s{n}", "sse", "", None, "", 0.0)
        await store.create(record, idle_timeout=60)
    assert await store.load("s0") is None
    assert await store.load("s2") is not None


class FlakyStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__(max_sessions=1, resume_window=0)
        self.calls = 0

    async def heartbeat(self, address: str, *, ttl: float) -> None:
        self.calls += 1
        if self.calls <= 2:
            raise SessionStoreUnavailable("Redis is down")
        await super().heartbeat(address, ttl=ttl)


async def test_the_heartbeat_goes_on_through_an_outage() -> None:
    store = FlakyStore()
    failures: list[None] = []
    task = asyncio.create_task(
        keep_alive(
            store,
            "10.0.0.1:80",
            interval=0.01,
            ttl=5,
            on_failure=lambda: failures.append(None),
        )
    )
    try:
        for _ in range(200):
            if await store.is_alive("10.0.0.1:80"):
                break
            await asyncio.sleep(0.01)
        assert await store.is_alive("10.0.0.1:80")
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert store.calls >= 3
    assert len(failures) == 2  # each failed heartbeat is counted, not only the first


async def test_the_endpoints_get_the_start_ups_store_address_and_forwarder() -> None:
    settings = ProxyRunnerSettings(port=9100, advertise_address="10.0.0.5:9100")
    async with contextlib.AsyncExitStack() as stack:
        supervisor = TaskSupervisor()
        stack.push_async_callback(supervisor.aclose)
        sharing = share_sessions(settings, supervisor=supervisor, stack=stack)
        endpoints = build_endpoints(
            Backend("streamable-http", target_urls=("http://127.0.0.1:1/mcp",)),
            settings=settings,
            metrics=ProxyMetrics(CollectorRegistry()),
            pipeline=Pipeline([]),
            sharing=sharing,
        )
        assert isinstance(endpoints, HttpEndpoints)
        assert endpoints.store is sharing.store
        assert endpoints.forwarder is sharing.forwarder
        assert endpoints.address == sharing.address == "10.0.0.5:9100"
        for _ in range(100):
            if await sharing.store.is_alive("10.0.0.5:9100"):
                break
            await asyncio.sleep(0.01)
        assert await sharing.store.is_alive("10.0.0.5:9100")


def test_endpoints_built_alone_keep_sessions_in_their_own_memory() -> None:
    settings = ProxyRunnerSettings(port=9100)
    endpoints = HttpEndpoints(
        ["http://127.0.0.1:1/mcp"],
        transport="streamable-http",
        settings=settings,
        pipeline=Pipeline([]),
        metrics=ProxyMetrics(CollectorRegistry()),
    )
    assert isinstance(endpoints.store, MemoryStore)
    assert endpoints.address == "127.0.0.1:9100"


async def test_redis_storage_is_a_redis_store_whose_client_the_buckets_share() -> None:
    storage = RunConfigSessionStorage.model_validate(
        {"type": "redis", "redis": {"address": "127.0.0.1:1", "key_prefix": "p:"}}
    )
    settings = ProxyRunnerSettings(session_storage=storage, limits=Limits(resume_window=7))
    async with contextlib.AsyncExitStack() as stack:
        supervisor = TaskSupervisor()
        stack.push_async_callback(supervisor.aclose)
        sharing = share_sessions(settings, supervisor=supervisor, stack=stack)
        assert isinstance(sharing.store, RedisStore)
        assert sharing.store.key_prefix == "p:"
        buckets = shared_buckets(sharing)
        assert isinstance(buckets, RedisBuckets)
        assert buckets.client is sharing.store.client
        assert buckets.key_prefix == "p:"
    memory = ProxyRunnerSettings()
    async with contextlib.AsyncExitStack() as stack:
        supervisor = TaskSupervisor()
        stack.push_async_callback(supervisor.aclose)
        assert shared_buckets(share_sessions(memory, supervisor=supervisor, stack=stack)) is None


def test_the_replicas_sharing_is_measured() -> None:
    registry = CollectorRegistry()
    metrics = ProxyMetrics(registry)
    metrics.count_forward("ok")
    metrics.session_store_errors.labels("load").inc()
    metrics.sessions_adopted.labels("sse").inc()
    assert (
        registry.get_sample_value("moorage_proxy_requests_forwarded_total", {"outcome": "ok"}) == 1
    )
    assert (
        registry.get_sample_value("moorage_proxy_session_store_errors_total", {"operation": "load"})
        == 1
    )
    assert registry.get_sample_value("moorage_proxy_sessions_adopted_total", {"kind": "sse"}) == 1
