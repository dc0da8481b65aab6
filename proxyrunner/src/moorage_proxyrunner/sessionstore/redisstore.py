"""Sessions in Redis (`sessionStorage.type: redis`), seen alike by every replica of a proxy.

Keys, all under the RunConfig's key prefix `<p>` (a session's id is hashed, sha256 hex, so that
a client's id never shapes a key):
- `<p>sess:<hash>`: the session's record as a hash (`records.encode_record`'s fields) plus
  `~idle`, its idle timeout in milliseconds. The key expires after that long; `load` restarts
  it.
- `<p>ev:<hash>`: a Redis stream of the session's SSE events (fields `s` stream, `i` event id,
  `d` data), capped at `resume_window` entries, expiring with the session.
- `<p>owner:<address>`: the set of the session hashes a replica owns (for `release`), expiring
  with the longest-lived of them.
- `<p>alive:<address>`: present while the replica's heartbeat lasts.
- `<p>key:<name>`: a shared 32-byte key, made by the first replica to ask (`SET NX`).

Every change that reads before it writes (`claim`, `set_state`, `release`, ...) is one Lua
script, so two replicas racing for a session see one winner. What is read back is checked
(`decode_record`, and the id must be the one asked for): anything else is refused as
`SessionStoreUnavailable` and logged, never served as a session. A standalone server or a
Sentinel-managed primary; Redis Cluster is not supported (scripts name keys they compute).

Failure handling is the rate-limit buckets' (`policy.redisbuckets`): every Redis failure
(refused, reset, timed out, `NOAUTH`, a failover in progress) is `SessionStoreUnavailable`
with a message saying so; for `RETRY_INTERVAL` seconds after one, the store answers at once
instead of making every request wait for a timeout; then it tries again, and the client
reconnects by itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, NoReturn, TypeVar

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from moorage_api.runconfig import RunConfigRedis
from moorage_proxyrunner.sessionstore import redisconn
from moorage_proxyrunner.sessionstore.records import (
    Json,
    RecordError,
    SessionRecord,
    check_record,
    decode_record,
    encode_record,
)
from moorage_proxyrunner.sessionstore.store import SessionStoreUnavailable

log = structlog.get_logger(__name__)

T = TypeVar("T")

IDLE_FIELD: Final = "~idle"
"""The hash field holding the session's idle timeout (ms); not part of the record."""

# KEYS[1] session, KEYS[2] its owner set (none without an owner). ARGV: idle ms, session hash, then field/value pairs.
CREATE_SCRIPT: Final = """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if #KEYS > 1 then
  redis.call('SADD', KEYS[2], ARGV[2])
  if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[2], ARGV[1]) end
end
return 1
"""

# KEYS[1] session, KEYS[2] its events. ARGV[1] prefix of the owner sets.
LOAD_SCRIPT: Final = """
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return fields end
local idle = redis.call('HGET', KEYS[1], '~idle')
local owner = redis.call('HGET', KEYS[1], 'owner')
if idle then
  redis.call('PEXPIRE', KEYS[1], idle)
  redis.call('PEXPIRE', KEYS[2], idle)
  if owner and owner ~= '' then
    local set = ARGV[1] .. owner
    if redis.call('PTTL', set) < tonumber(idle) then redis.call('PEXPIRE', set, idle) end
  end
end
return fields
"""

# KEYS[1] session. ARGV: field, value ('' with a delete flag) triples: name, flag, value.
SET_FIELDS_SCRIPT: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 1, #ARGV, 3 do
  if ARGV[i + 1] == 'del' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
  end
end
return 1
"""

# KEYS[1] session. ARGV: expected owner, new owner, owner-set prefix, session hash.
CLAIM_SCRIPT: Final = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner or owner ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[2])
if ARGV[1] ~= '' then redis.call('SREM', ARGV[3] .. ARGV[1], ARGV[4]) end
if ARGV[2] ~= '' then
  local set = ARGV[3] .. ARGV[2]
  redis.call('SADD', set, ARGV[4])
  local ttl = redis.call('PTTL', KEYS[1])
  if redis.call('PTTL', set) < ttl then redis.call('PEXPIRE', set, ttl) end
end
return 1
"""

# KEYS[1] the owner set. ARGV: owner, session key prefix.
RELEASE_SCRIPT: Final = """
local released = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[2] .. id
  if redis.call('HGET', key, 'owner') == ARGV[1] then
    redis.call('HSET', key, 'owner', '')
    released = released + 1
  end
end
redis.call('DEL', KEYS[1])
return released
"""

# KEYS[1] session, KEYS[2] events. ARGV: owner-set prefix, session hash.
DELETE_SCRIPT: Final = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner and owner ~= '' then redis.call('SREM', ARGV[1] .. owner, ARGV[2]) end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"""

# KEYS[1] session, KEYS[2] events. ARGV: window, stream, event id, data.
APPEND_SCRIPT: Final = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], '*', 's', ARGV[2], 'i', ARGV[3], 'd', ARGV[4])
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
"""


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class RedisStore:
    """The `SessionStore` over a Redis client; keys under `key_prefix`. The client is this
    store's (closed by `close`), and may be lent to the rate-limit buckets."""

    def __init__(self, client: Redis, *, key_prefix: str, resume_window: int) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self._resume_window = resume_window
        self._create = client.register_script(CREATE_SCRIPT)
        self._load = client.register_script(LOAD_SCRIPT)
        self._set_fields = client.register_script(SET_FIELDS_SCRIPT)
        self._claim = client.register_script(CLAIM_SCRIPT)
        self._release = client.register_script(RELEASE_SCRIPT)
        self._delete = client.register_script(DELETE_SCRIPT)
        self._append = client.register_script(APPEND_SCRIPT)
        self._retry_at = 0.0
        self._down = False

    @property
    def shared(self) -> bool:
        return True

    def _session_key(self, session_id: str) -> str:
        return f"{self.key_prefix}sess:{session_hash(session_id)}"

    def _events_key(self, session_id: str) -> str:
        return f"{self.key_prefix}ev:{session_hash(session_id)}"

    @property
    def _owner_prefix(self) -> str:
        return f"{self.key_prefix}owner:"

    async def _call(self, operation: str, work: Callable[[], Awaitable[T]]) -> T:
        """`await work()`, every Redis failure turned into `SessionStoreUnavailable`."""
        if time.monotonic() < self._retry_at:
            raise SessionStoreUnavailable(
                "The session storage (Redis) was unreachable moments ago; retry shortly"
            )
        try:
            result = await work()
        except (RedisError, OSError) as exc:
            self._retry_at = time.monotonic() + redisconn.RETRY_INTERVAL
            reason = str(exc) or type(exc).__name__
            if not self._down:
                log.error("session_store_down", operation=operation, error=reason)
            self._down = True
            raise SessionStoreUnavailable(
                f"The session storage (Redis) is unavailable: {reason}"
            ) from None
        # A command that was already under way when another failed has just reached Redis:
        # the pause after that failure is over.
        self._retry_at = 0.0
        if self._down:
            log.info("session_store_back", operation=operation)
            self._down = False
        return result

    async def create(self, record: SessionRecord, *, idle_timeout: float) -> None:
        fields = encode_record(record)
        idle_ms = max(1, int(idle_timeout * 1000))
        args: list[str | int] = [idle_ms, session_hash(record.id)]
        for name, value in {**fields, IDLE_FIELD: str(idle_ms)}.items():
            args += [name, value]
        keys = [self._session_key(record.id)]
        if record.owner:
            keys.append(self._owner_prefix + record.owner)
        await self._call("create", lambda: self._create(keys=keys, args=args))

    async def _fields(self, session_id: str) -> dict[str, str] | None:
        keys = [self._session_key(session_id), self._events_key(session_id)]
        flat = await self._call("load", lambda: self._load(keys=keys, args=[self._owner_prefix]))
        if not flat:
            return None
        try:
            pairs = [v.decode() if isinstance(v, bytes) else str(v) for v in flat]
        except UnicodeDecodeError:
            self._refuse(session_id, "a field that is not UTF-8")
        fields = dict(zip(pairs[::2], pairs[1::2], strict=True))
        fields.pop(IDLE_FIELD, None)
        return fields

    def _refuse(self, session_id: str, problem: str) -> NoReturn:
        log.error("session_record_refused", session_hash=session_hash(session_id), error=problem)
        raise SessionStoreUnavailable(
            "The session storage (Redis) holds a session record this proxy did not write"
        )

    async def load(self, session_id: str) -> SessionRecord | None:
        fields = await self._fields(session_id)
        if fields is None:
            return None
        try:
            record = decode_record(fields)
        except RecordError as exc:
            self._refuse(session_id, str(exc))
        if record.id != session_id:
            self._refuse(session_id, "the record is another session's")
        return record

    async def set_state(self, session_id: str, changes: Mapping[str, Json | None]) -> None:
        record = await self.load(session_id)
        if record is None:
            return
        state = dict(record.state)
        args: list[str] = []
        for key, value in changes.items():
            if value is None:
                state.pop(key, None)
                args += [f"s:{key}", "del", ""]
            else:
                state[key] = value
                args += [f"s:{key}", "set", json.dumps(value, separators=(",", ":"))]
        check_record(dataclasses.replace(record, state=state))
        if args:
            keys = [self._session_key(session_id)]
            await self._call("set_state", lambda: self._set_fields(keys=keys, args=args))

    async def set_era(self, session_id: str, era: str) -> None:
        keys = [self._session_key(session_id)]
        args = ["era", "set", era]
        await self._call("set_era", lambda: self._set_fields(keys=keys, args=args))

    async def claim(self, session_id: str, *, expected_owner: str, owner: str) -> bool:
        args = [expected_owner, owner, self._owner_prefix, session_hash(session_id)]
        keys = [self._session_key(session_id)]
        won = await self._call("claim", lambda: self._claim(keys=keys, args=args))
        return bool(int(won))

    async def release(self, owner: str) -> int:
        keys = [self._owner_prefix + owner]
        args = [owner, f"{self.key_prefix}sess:"]
        released = await self._call("release", lambda: self._release(keys=keys, args=args))
        return int(released)

    async def delete(self, session_id: str) -> None:
        keys = [self._session_key(session_id), self._events_key(session_id)]
        args = [self._owner_prefix, session_hash(session_id)]
        await self._call("delete", lambda: self._delete(keys=keys, args=args))

    async def append_event(self, session_id: str, stream: str, event_id: str, data: bytes) -> None:
        if self._resume_window <= 0:
            return
        keys = [self._session_key(session_id), self._events_key(session_id)]
        args: list[str | int | bytes] = [self._resume_window, stream, event_id, data]
        await self._call("append_event", lambda: self._append(keys=keys, args=args))

    async def events_after(
        self, session_id: str, stream: str, event_id: str
    ) -> list[tuple[str, bytes]] | None:
        key = self._events_key(session_id)
        entries = await self._call("events_after", lambda: self.client.xrange(key))
        try:
            kept = [(i, d) for s, i, d in _events(entries) if s == stream]
        except ValueError as exc:
            self._refuse(session_id, str(exc))
        ids = [i for i, _ in kept]
        if event_id not in ids:
            return None
        return kept[ids.index(event_id) + 1 :]

    async def shared_key(self, name: str) -> bytes:
        key = f"{self.key_prefix}key:{name}"
        fresh = secrets.token_bytes(32)
        await self._call("shared_key", lambda: self.client.set(key, fresh, nx=True))
        value = await self._call("shared_key", lambda: self.client.get(key))
        if not isinstance(value, bytes) or len(value) != 32:
            log.error("shared_key_refused", name=name)
            raise SessionStoreUnavailable(
                f"The session storage (Redis) holds a key {name!r} this proxy did not write"
            )
        return value

    async def heartbeat(self, address: str, *, ttl: float) -> None:
        key = f"{self.key_prefix}alive:{address}"
        ttl_ms = max(1, int(ttl * 1000))
        await self._call("heartbeat", lambda: self.client.set(key, b"1", px=ttl_ms))

    async def is_alive(self, address: str) -> bool:
        key = f"{self.key_prefix}alive:{address}"
        return bool(await self._call("is_alive", lambda: self.client.exists(key)))

    async def close(self) -> None:
        await self.client.aclose()


def _events(entries: Any) -> list[tuple[str, str, bytes]]:
    """(stream, event id, data) of each `XRANGE` entry; ValueError for what we did not write."""
    events: list[tuple[str, str, bytes]] = []
    for _, entry in entries or ():
        fields = entry if isinstance(entry, dict) else {}
        stream, event_id, data = fields.get(b"s"), fields.get(b"i"), fields.get(b"d")
        if not (
            isinstance(stream, bytes) and isinstance(event_id, bytes) and isinstance(data, bytes)
        ):
            raise ValueError("an event this proxy did not write")
        events.append((stream.decode(), event_id.decode(), data))
    return events


def open_redis_store(
    redis: RunConfigRedis,
    *,
    resume_window: int,
    environ: Mapping[str, str] | None = None,
    ca_data: str | None = None,
) -> RedisStore:
    """The store for `redis` (no I/O yet: the client connects on first use)."""
    client = redisconn.redis_client(redis, environ=environ, ca_data=ca_data)
    return RedisStore(client, key_prefix=redis.key_prefix, resume_window=resume_window)
