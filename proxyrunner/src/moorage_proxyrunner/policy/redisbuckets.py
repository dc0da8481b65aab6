"""Token buckets in Redis, shared by every replica of a proxy (`sessionStorage.type: redis`).

One Lua script (`TAKE_SCRIPT`) does what `tokenbuckets.take` does, atomically, on the server:
it reads the time with `TIME` (so replicas whose clocks disagree still agree on every bucket),
refills, and takes a token from every bucket or from none. A bucket is a hash
`<key_prefix>rl:s:<subject digest>` (per subject) or `<key_prefix>rl:t:<tool digest>[:<subject
digest>]` (per tool) with fields `l` (level, units) and `t` (microseconds); each write sets the
key to expire when the bucket would be full again (plus a second): an expired bucket and a full
one are the same. A standalone server or a Sentinel-managed primary; Redis Cluster is not
supported (one request's buckets are one script's keys).

Redis going away must not take the proxy with it: every failure (refused, reset, timed out,
`NOAUTH`, a failover in progress) becomes `StoreUnavailable`, and for `RETRY_INTERVAL` seconds
after one the store answers `StoreUnavailable` at once instead of making every request wait for
a connection timeout. The next request after that tries again, so limits come back by themselves
when Redis does. The client (redis-py's asyncio client) reconnects on its own.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from moorage_api.runconfig import RunConfig, RunConfigRedis
from moorage_core.errors import KubeError
from moorage_core.kube import CONFIGMAPS, KubeClient
from moorage_proxyrunner.policy.ratelimit import StoreUnavailable
from moorage_proxyrunner.policy.tokenbuckets import UNITS_PER_TOKEN, BucketLimit, Verdict

log = structlog.get_logger(__name__)

RETRY_INTERVAL: Final = 1.0
"""Seconds after a failure during which the store does not try Redis again."""
SOCKET_TIMEOUT: Final = 0.5
"""Seconds a connect or a command may take before Redis counts as unreachable."""
EXPIRY_SLACK_MS: Final = 1000

TAKE_SCRIPT: Final = f"""
local U = {UNITS_PER_TOKEN}
local function ceil_div(a, b)
  local q = math.floor(a / b)
  while q * b < a do q = q + 1 end
  while q > 0 and (q - 1) * b >= a do q = q - 1 end
  return q
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local states = {{}}
local wait, blocking = 0, -1
for i, key in ipairs(KEYS) do
  local rpm = tonumber(ARGV[2 * i - 1])
  local cap = tonumber(ARGV[2 * i]) * U
  local full = ceil_div(cap, rpm)
  local level, at = cap, now
  local stored = redis.call('HMGET', key, 'l', 't')
  if stored[1] and stored[2] then
    level, at = tonumber(stored[1]), tonumber(stored[2])
    local elapsed = now - at
    if elapsed < 0 then elapsed = 0 end
    if elapsed > full then elapsed = full end
    level = math.min(cap, level + elapsed * rpm)
    if at < now then at = now end
  end
  states[i] = {{level, at, full}}
  if level < U then
    local needed = ceil_div(U - level, rpm)
    if needed > wait then wait, blocking = needed, i - 1 end
  end
end
if blocking >= 0 then return {{0, wait, blocking}} end
for i, key in ipairs(KEYS) do
  local s = states[i]
  redis.call('HSET', key, 'l', string.format('%d', s[1] - U), 't', string.format('%d', s[2]))
  redis.call('PEXPIRE', key, ceil_div(s[3], 1000) + {EXPIRY_SLACK_MS})
end
return {{1, 0, -1}}
"""


class RedisBuckets:
    """The `BucketStore` over a Redis client; keys are put under `key_prefix`."""

    def __init__(self, client: Redis, *, key_prefix: str) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self._script = client.register_script(TAKE_SCRIPT)
        self._retry_at = 0.0
        self._down = False

    async def take(self, keys: Sequence[str], limits: Sequence[BucketLimit]) -> Verdict:
        now = time.monotonic()
        if now < self._retry_at:
            raise StoreUnavailable("Redis was unreachable moments ago; not retried yet")
        args: list[int] = []
        for limit in limits:
            args += [limit.requests_per_minute, limit.burst]
        try:
            result = await self._script(keys=[self.key_prefix + k for k in keys], args=args)
        except (RedisError, OSError) as exc:
            self._retry_at = time.monotonic() + RETRY_INTERVAL
            if not self._down:
                log.error("rate_limit_store_down", error=str(exc) or type(exc).__name__)
            self._down = True
            raise StoreUnavailable(str(exc) or type(exc).__name__) from None
        if self._down:
            log.info("rate_limit_store_back")
            self._down = False
        allowed, wait, blocking = (int(v) for v in result)
        if allowed:
            return Verdict(True)
        return Verdict(False, wait, blocking)

    async def close(self) -> None:
        await self.client.aclose()


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


def open_redis_buckets(
    redis: RunConfigRedis, *, environ: Mapping[str, str] | None = None, ca_data: str | None = None
) -> RedisBuckets:
    """The store for `redis` (no I/O yet: the client connects on first use)."""
    options = connection_options(redis, environ=environ, ca_data=ca_data)
    client: Redis
    if redis.sentinel is not None:
        sentinel = Sentinel(
            [host_port(a) for a in redis.sentinel.addresses],
            sentinel_kwargs={k: v for k, v in options.items() if k not in {"db", "password"}},
            **options,
        )
        client = sentinel.master_for(redis.sentinel.master_name)
    else:
        host, port = host_port(redis.address)
        client = Redis(host=host, port=port, **options)
    return RedisBuckets(client, key_prefix=redis.key_prefix)


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
