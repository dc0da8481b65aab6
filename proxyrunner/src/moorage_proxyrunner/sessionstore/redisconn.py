"""The connection to Redis (`sessionStorage.type: redis`) that the session store and the
rate-limit buckets share: one client, so one connection pool, per process.

`connection_options` turns the RunConfig's settings into redis-py's (the password from the
variable the RunConfig names, TLS, and timeouts short enough that Redis going away costs a
request `SOCKET_TIMEOUT`, not a hang); `redis_client` makes the client (a standalone server, or
the primary a Sentinel names; Redis Cluster is not supported); `fetch_redis_ca` reads the CA
bundle the RunConfig names from its ConfigMap.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Mapping
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from moorage_api.runconfig import RunConfig, RunConfigRedis
from moorage_core.errors import KubeError
from moorage_core.kube import CONFIGMAPS, KubeClient

RETRY_INTERVAL: Final = 1.0
"""Seconds after a failure during which a Redis-backed store does not try Redis again."""
SOCKET_TIMEOUT: Final = 0.5
"""Seconds a connect or a command may take before Redis counts as unreachable."""
MAX_COMMANDS: Final = 64
"""Redis commands one process has under way at once; more wait their turn. redis-py's pool
opens a connection per concurrent command and refuses the 101st ("Too many connections"), which
a burst of sessions would reach and which the stores would take for Redis being down."""


class BoundedRedis(Redis):
    """A client with at most `MAX_COMMANDS` commands under way (each is sub-millisecond, so the
    wait is short), and so at most that many pooled connections."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = asyncio.Semaphore(MAX_COMMANDS)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        async with self._slots:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]


def host_port(address: str) -> tuple[str, int]:
    """`host:port` (an IPv6 host in brackets) as a pair; the API checked its form."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class RedisSettingError(ValueError):
    """The Redis settings cannot be used (a missing password variable); names what to fix."""


def connection_options(
    redis: RunConfigRedis, *, environ: Mapping[str, str] | None = None, ca_data: str | None = None
) -> dict[str, Any]:
    """redis-py connection keywords for `redis`: the password from the environment variable the
    RunConfig names (`RedisSettingError` when it is not set), TLS and timeouts."""
    env = os.environ if environ is None else environ
    options: dict[str, Any] = {
        "db": redis.db,
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": SOCKET_TIMEOUT,
        # One immediate retry covers a pooled connection that Redis closed (a restart); more,
        # with back-off, would hold every request while Redis is down.
        "retry": Retry(NoBackoff(), 1),
    }
    if redis.password is not None:
        value = env.get(redis.password.env)
        if not value:
            raise RedisSettingError(
                f"session_storage.redis.password: environment variable {redis.password.env} "
                "is not set"
            )
        options["password"] = value
    tls = redis.tls
    if tls is not None and tls.enabled:
        options["ssl"] = True
        if tls.insecure_skip_verify:
            options["ssl_cert_reqs"] = ssl.CERT_NONE
            options["ssl_check_hostname"] = False
        if ca_data is not None:
            options["ssl_ca_data"] = ca_data
        elif tls.ca_file is not None:
            options["ssl_ca_certs"] = tls.ca_file
    return options


def redis_client(
    redis: RunConfigRedis, *, environ: Mapping[str, str] | None = None, ca_data: str | None = None
) -> Redis:
    """The client for `redis` (no I/O yet: it connects on first use)."""
    options = connection_options(redis, environ=environ, ca_data=ca_data)
    if redis.sentinel is not None:
        sentinel = Sentinel(
            [host_port(a) for a in redis.sentinel.addresses],
            sentinel_kwargs={k: v for k, v in options.items() if k not in {"db", "password"}},
            **options,
        )
        primary: Redis = sentinel.master_for(redis.sentinel.master_name, redis_class=BoundedRedis)
        return primary
    host, port = host_port(redis.address)
    return BoundedRedis(host=host, port=port, **options)


async def fetch_redis_ca(kube: KubeClient, runconfig: RunConfig) -> str | None:
    """The PEM CA bundle of `session_storage.redis.tls.ca_config_map_ref`, read from the
    proxy's namespace (the operator's Role lets the proxy read that ConfigMap); None when the
    RunConfig names none. `RedisSettingError` naming the ConfigMap when it cannot be read."""
    redis = runconfig.session_storage.redis
    ref = redis.tls.ca_config_map_ref if redis is not None and redis.tls is not None else None
    if ref is None:
        return None
    try:
        config_map = await kube.get(CONFIGMAPS, name=ref.name, namespace=runconfig.namespace)
    except KubeError as exc:
        raise RedisSettingError(
            f"session_storage.redis.tls.ca_config_map_ref: ConfigMap {ref.name}: {exc}"
        ) from None
    value = (config_map.get("data") or {}).get(ref.key)
    if not isinstance(value, str) or not value.strip():
        raise RedisSettingError(
            f"session_storage.redis.tls.ca_config_map_ref: ConfigMap {ref.name} has no key "
            f"{ref.key}"
        )
    return value
