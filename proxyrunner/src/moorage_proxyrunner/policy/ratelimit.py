"""Rate limiting (spec.rateLimits): the pipeline step, its metrics, and the in-memory buckets.

The step runs right after the audit step and before the tool filter, so a tool's limit is keyed
by the name the client used (the name clients see, after renaming), and a request refused here
is recorded by audit with decision `rate_limited` and never reaches authorisation or the
backend. Every request with an id takes a token from its subject's bucket (`per_subject`; all
unauthenticated callers share one bucket); a `tools/call` also from its tool's bucket
(`per_tool`: one per subject and tool, or one for the tool when `per_subject` is false). Both are
taken together or not at all (`tokenbuckets.take`). Notifications are never limited: they
cannot be answered.

Over a limit, the client gets JSON-RPC error -32000 (the code the proxy's other per-client
limits use) with `data: {"retryAfterMs": N, "scope": "subject"|"tool"}`, on HTTP 429 with a
`Retry-After` header (whole seconds, rounded up) where the answer is a plain JSON response. A
legacy HTTP+SSE session of a stdio server gets the error on its stream (the POST is accepted,
202); in front of an HTTP+SSE server the POST itself is answered 429, as a denial is 403. The SDK
clients read a JSON-RPC error from a 429 body and hand it to the caller as the error of the call.

Buckets live in a `BucketStore`: `MemoryBuckets` here (per process; an LRU bounded by
`MAX_RATE_LIMIT_BUCKETS`), or Redis (`redisbuckets`), shared by the replicas. When the store
cannot be reached the step follows `when_unavailable`: `allow` (default) lets the request
through unlimited, `deny` refuses it with -32000 on HTTP 503; either way it is counted in
`moorage_proxy_rate_limit_store_errors_total`, and the Redis store logs the outage once.
The limits themselves (`RunConfigRateLimits`) are swapped live by `chain.Middleware.apply`.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Final, Protocol

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from moorage_api.runconfig import RunConfigRateLimits
from moorage_proxyrunner.config.limits import LIMIT_REACHED
from moorage_proxyrunner.policy.tokenbuckets import BucketLimit, BucketState, Verdict, take
from moorage_proxyrunner.protocol.jsonrpc import error_response
from moorage_proxyrunner.protocol.pipeline import CallNext, McpCall, Reply

log = structlog.get_logger(__name__)

RATE_LIMITED: Final = "rate_limited"
"""The audit decision of a request refused by a rate limit."""
SCOPE_SUBJECT: Final = "subject"
SCOPE_TOOL: Final = "tool"


class StoreUnavailable(Exception):
    """The buckets cannot be read or written now (Redis unreachable, timed out, refused)."""


class BucketStore(Protocol):
    """Where buckets live; `take` is `tokenbuckets.take` applied atomically to `keys`."""

    async def take(self, keys: Sequence[str], limits: Sequence[BucketLimit]) -> Verdict: ...

    async def close(self) -> None: ...


class MemoryBuckets:
    """Buckets in this process, at most `capacity` of them (least recently used dropped first).

    Dropping a bucket forgets what its subject used: harmless for a bucket idle long enough to
    be full again (`BucketLimit.full_after_us`), which is what an LRU drops first under normal
    load; under more distinct subjects than `capacity` at once, a dropped bucket starts full.
    Time is the monotonic clock, so a wall-clock step changes nothing.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._buckets: OrderedDict[str, BucketState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    async def take(self, keys: Sequence[str], limits: Sequence[BucketLimit]) -> Verdict:
        return self.take_at(keys, limits, now_us=time.monotonic_ns() // 1000)

    def take_at(
        self, keys: Sequence[str], limits: Sequence[BucketLimit], *, now_us: int
    ) -> Verdict:
        states, verdict = take([self._buckets.get(k) for k in keys], limits, now_us=now_us)
        for key, state in zip(keys, states or (), strict=False):
            self._buckets[key] = state
        for key in keys:
            if key in self._buckets:
                self._buckets.move_to_end(key)
        while len(self._buckets) > self.capacity:
            self._buckets.popitem(last=False)
        return verdict

    async def close(self) -> None:
        self._buckets.clear()


def digest(text: str) -> str:
    """A fixed-length, key-safe stand-in for a subject or tool name (any characters, any
    length): 128 bits of SHA-256."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def subject_key(subject: str | None) -> str:
    return f"rl:s:{digest(subject or '')}"


def tool_key(tool: str, subject: str | None, *, per_subject: bool) -> str:
    if not per_subject:
        return f"rl:t:{digest(tool)}"
    return f"rl:t:{digest(tool)}:{digest(subject or '')}"


def buckets_for(
    call: McpCall, limits: RunConfigRateLimits
) -> tuple[list[str], list[BucketLimit], list[str]]:
    """The keys, limits and scopes of the buckets a request takes from."""
    keys: list[str] = []
    bucket_limits: list[BucketLimit] = []
    scopes: list[str] = []
    subject = call.identity.subject
    if limits.per_subject is not None:
        keys.append(subject_key(subject))
        bucket_limits.append(
            BucketLimit(limits.per_subject.requests_per_minute, limits.per_subject.burst)
        )
        scopes.append(SCOPE_SUBJECT)
    name = call.params.get("name") if call.method == "tools/call" else None
    if isinstance(name, str):
        for limit in limits.per_tool:
            if limit.tool == name:
                keys.append(tool_key(name, subject, per_subject=limit.per_subject))
                bucket_limits.append(BucketLimit(limit.requests_per_minute, limit.burst))
                scopes.append(SCOPE_TOOL)
                break
    return keys, bucket_limits, scopes


def limited_reply(call: McpCall, *, scope: str, retry_after_us: int) -> Reply:
    retry_ms = max(1, math.ceil(retry_after_us / 1000))
    if scope == SCOPE_TOOL:
        text = f"Rate limit reached for tool {call.params.get('name')!r}"
    else:
        text = "Rate limit reached for this client"
    text += f"; retry in {retry_ms / 1000:g}s"
    data = {"retryAfterMs": retry_ms, "scope": scope}
    return Reply(error_response(call.id, LIMIT_REACHED, text, data), status=429)


def unavailable_reply(call: McpCall) -> Reply:
    return Reply(
        error_response(
            call.id,
            LIMIT_REACHED,
            "Rate limits cannot be checked now (their store is unreachable); retry later",
            {"retryAfterMs": 1000, "scope": "store"},
        ),
        status=503,
    )


class RateLimitMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.limited = Counter(
            "moorage_proxy_rate_limited_total",
            "Requests refused by a rate limit, by the bucket that refused them.",
            ["scope"],
            registry=registry,
        )
        self.store_errors = Counter(
            "moorage_proxy_rate_limit_store_errors_total",
            "Requests whose rate limits could not be checked because the store was unreachable.",
            ["outcome"],
            registry=registry,
        )


class RateLimitStep:
    """The rate-limit step; `limits` is None while no limit is set, and is replaced live."""

    def __init__(
        self,
        limits: RunConfigRateLimits | None,
        *,
        store: BucketStore,
        metrics: RateLimitMetrics | None = None,
    ) -> None:
        self.limits = limits
        self.store = store
        self.metrics = metrics

    async def __call__(self, call: McpCall, call_next: CallNext) -> Reply:
        limits = self.limits
        if limits is None or call.id is None:
            return await call_next(call)
        keys, bucket_limits, scopes = buckets_for(call, limits)
        if not keys:
            return await call_next(call)
        try:
            verdict = await self.store.take(keys, bucket_limits)
        except StoreUnavailable as exc:
            outcome = "allowed" if limits.when_unavailable == "allow" else "denied"
            if self.metrics is not None:
                self.metrics.store_errors.labels(outcome).inc()
            # The store logs the outage once (`rate_limit_store_down`); each request only counts.
            log.debug("rate_limit_store_unavailable", error=str(exc), outcome=outcome)
            if outcome == "allowed":
                return await call_next(call)
            call.decisions.decision = RATE_LIMITED
            return unavailable_reply(call)
        if verdict.allowed:
            return await call_next(call)
        assert verdict.blocking is not None, "a refused take names the bucket that refused it"
        scope = scopes[verdict.blocking]
        if self.metrics is not None:
            self.metrics.limited.labels(scope).inc()
        call.decisions.decision = RATE_LIMITED
        log.info(
            "rate_limited",
            subject=call.identity.subject,
            method=call.method,
            scope=scope,
            retry_after_ms=math.ceil(verdict.retry_after_us / 1000),
        )
        return limited_reply(call, scope=scope, retry_after_us=verdict.retry_after_us)


async def add_retry_after(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: a 429 answer carrying a JSON-RPC error with `data.retryAfterMs`
    gets `Retry-After` (whole seconds, rounded up), whichever endpoint sent it."""
    del request
    if response.status != 429 or not isinstance(response, web.Response):
        return
    if "Retry-After" in response.headers or not isinstance(response.body, bytes):
        return
    try:
        data = json.loads(response.body)["error"]["data"]["retryAfterMs"]
    except (ValueError, KeyError, TypeError):
        return
    if isinstance(data, int) and data > 0:
        response.headers["Retry-After"] = str(math.ceil(data / 1000))
