"""The process's one session store, made from its settings, and the replica's heartbeat.

`open_session_store` picks the store `sessionStorage` names: this process's memory (one
replica) or Redis, shared by the replicas (its client is lent to the rate-limit buckets). `keep_alive` says every `HEARTBEAT_INTERVAL` seconds
that this replica is alive, for `HEARTBEAT_TTL` seconds: a replica that stops saying so (killed,
partitioned) is taken for gone after at most that long, and its sessions are adopted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

import structlog

from moorage_proxyrunner.config.limits import Limits
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.sessionstore.memory import MemoryStore
from moorage_proxyrunner.sessionstore.redisstore import open_redis_store
from moorage_proxyrunner.sessionstore.store import SessionStore, SessionStoreUnavailable

log = structlog.get_logger(__name__)

HEARTBEAT_INTERVAL: Final = 2.0
HEARTBEAT_TTL: Final = 6.0
"""Three intervals: one late heartbeat (a busy event loop, a slow Redis) is not a death."""


def memory_store(limits: Limits) -> MemoryStore:
    """Sessions in this process, bounded by `limits` (`max_sessions`, `resume_window`)."""
    return MemoryStore(max_sessions=limits.max_sessions, resume_window=limits.resume_window)


def open_session_store(
    settings: ProxyRunnerSettings, *, redis_ca: str | None = None
) -> SessionStore:
    """The store `settings.session_storage` names (no I/O yet); `redis_ca`: the PEM bundle
    read from the ConfigMap the RunConfig names. `RedisSettingError` when the Redis password
    variable is not set."""
    redis = settings.session_storage.redis
    if redis is None:
        return memory_store(settings.limits)
    return open_redis_store(redis, resume_window=settings.limits.resume_window, ca_data=redis_ca)


async def keep_alive(
    store: SessionStore,
    address: str,
    *,
    interval: float = HEARTBEAT_INTERVAL,
    ttl: float = HEARTBEAT_TTL,
    on_failure: Callable[[], None] | None = None,
) -> None:
    """Heartbeat for `address` until cancelled. A store that cannot be reached is logged
    (once per outage), told to `on_failure` (each time: the start-up counts it, so that an idle
    replica's outage shows in its metrics too) and tried again next time: it must not end the
    process."""
    down = False
    while True:
        try:
            await store.heartbeat(address, ttl=ttl)
        except SessionStoreUnavailable as exc:
            if not down:
                log.warning("heartbeat_failed", address=address, error=str(exc))
            down = True
            if on_failure is not None:
                on_failure()
        else:
            if down:
                log.info("heartbeat_back", address=address)
            down = False
        await asyncio.sleep(interval)
