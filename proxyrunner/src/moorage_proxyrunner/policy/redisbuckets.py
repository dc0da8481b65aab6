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
when Redis does. The client (redis-py's asyncio client, `sessionstore.redisconn`) reconnects on
its own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Final

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from moorage_api.runconfig import RunConfigRedis
from moorage_proxyrunner.policy.ratelimit import StoreUnavailable
from moorage_proxyrunner.policy.tokenbuckets import UNITS_PER_TOKEN, BucketLimit, Verdict
from moorage_proxyrunner.sessionstore.redisconn import RETRY_INTERVAL, redis_client

log = structlog.get_logger(__name__)

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
    """The `BucketStore` over a Redis client; keys are put under `key_prefix`. With
    `close_client=False` the client is another's (the session store's) and stays open."""

    def __init__(self, client: Redis, *, key_prefix: str, close_client: bool = True) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self._close_client = close_client
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
        self._retry_at = 0.0  # a take under way when another failed got through: Redis is back
        if self._down:
            log.info("rate_limit_store_back")
            self._down = False
        allowed, wait, blocking = (int(v) for v in result)
        if allowed:
            return Verdict(True)
        return Verdict(False, wait, blocking)

    async def close(self) -> None:
        if self._close_client:
            await self.client.aclose()


def open_redis_buckets(
    redis: RunConfigRedis, *, environ: Mapping[str, str] | None = None, ca_data: str | None = None
) -> RedisBuckets:
    """The store for `redis` (no I/O yet: the client connects on first use)."""
    return RedisBuckets(
        redis_client(redis, environ=environ, ca_data=ca_data), key_prefix=redis.key_prefix
    )
