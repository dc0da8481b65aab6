"""The rate-limit step: which buckets a request takes from, the error a client gets over a
limit (-32000, HTTP 429, `retryAfterMs`), the audit decision, metrics, a store that cannot be
reached (allow or deny), live changes, the in-memory LRU, and `Retry-After`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from prometheus_client import CollectorRegistry

from moorage_api.runconfig import RunConfigRateLimits
from moorage_proxyrunner.policy.ratelimit import (
    MemoryBuckets,
    RateLimitMetrics,
    RateLimitStep,
    StoreUnavailable,
    add_retry_after,
    subject_key,
    tool_key,
)
from moorage_proxyrunner.policy.tokenbuckets import BucketLimit, Verdict
from moorage_proxyrunner.protocol.pipeline import Identity, McpCall, Reply

ALICE = Identity("alice")
BOB = Identity("bob")
OK = Reply({"jsonrpc": "2.0", "id": 1, "result": {}})


def limits(**data: Any) -> RunConfigRateLimits:
    return RunConfigRateLimits.model_validate(data)


def call(method: str = "tools/call", *, name: str = "get_time", who: Identity = ALICE) -> McpCall:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": 7, "method": method}
    if method == "tools/call":
        message["params"] = {"name": name, "arguments": {}}
    return McpCall(message, who, "legacy")


async def backend(_: McpCall) -> Reply:
    return OK


def step(rate_limits: RunConfigRateLimits | None, registry: CollectorRegistry) -> RateLimitStep:
    return RateLimitStep(rate_limits, store=MemoryBuckets(100), metrics=RateLimitMetrics(registry))


async def test_a_subject_gets_burst_requests_then_a_429_with_the_wait() -> None:
    registry = CollectorRegistry()
    limited = step(limits(per_subject={"requests_per_minute": 60, "burst": 2}), registry)
    assert (await limited(call("ping"), backend)) is OK
    assert (await limited(call("tools/list"), backend)) is OK
    refused = call("ping")
    reply = await limited(refused, backend)
    assert reply.status == 429
    assert reply.message is not None
    error = reply.message["error"]
    assert error["code"] == -32000
    assert reply.message["id"] == 7
    assert error["data"] == {"retryAfterMs": 1000, "scope": "subject"}
    assert "retry in 1s" in error["message"]
    assert refused.decisions.decision == "rate_limited"
    assert registry.get_sample_value("moorage_proxy_rate_limited_total", {"scope": "subject"}) == 1
    # Another subject has its own bucket.
    assert (await limited(call("ping", who=BOB), backend)) is OK


async def test_a_tool_limit_applies_to_that_tool_only_and_per_subject_by_default() -> None:
    registry = CollectorRegistry()
    limited = step(
        limits(per_tool=[{"tool": "get_time", "requests_per_minute": 6, "burst": 1}]), registry
    )
    assert (await limited(call(), backend)) is OK
    reply = await limited(call(), backend)
    assert reply.status == 429
    assert reply.message is not None
    assert reply.message["error"]["data"] == {"retryAfterMs": 10_000, "scope": "tool"}
    assert "'get_time'" in reply.message["error"]["message"]
    assert (await limited(call(name="convert_time"), backend)) is OK
    assert (await limited(call("ping"), backend)) is OK
    assert (await limited(call(who=BOB), backend)) is OK


async def test_a_shared_tool_limit_is_one_bucket_for_all_subjects() -> None:
    limited = step(
        limits(
            per_tool=[
                {"tool": "get_time", "requests_per_minute": 6, "burst": 1, "per_subject": False}
            ]
        ),
        CollectorRegistry(),
    )
    assert (await limited(call(), backend)) is OK
    assert (await limited(call(who=BOB), backend)).status == 429


async def test_a_request_refused_by_its_tool_does_not_use_up_its_subject() -> None:
    limited = step(
        limits(
            per_subject={"requests_per_minute": 60, "burst": 2},
            per_tool=[{"tool": "get_time", "requests_per_minute": 1, "burst": 1}],
        ),
        CollectorRegistry(),
    )
    assert (await limited(call(), backend)) is OK
    for _ in range(3):
        assert (await limited(call(), backend)).status == 429
    assert (await limited(call("ping"), backend)) is OK


async def test_notifications_and_unlimited_proxies_pass() -> None:
    limited = step(limits(per_subject={"requests_per_minute": 1, "burst": 1}), CollectorRegistry())
    note = McpCall({"jsonrpc": "2.0", "method": "notifications/initialized"}, ALICE, "legacy")
    for _ in range(3):
        assert (await limited(note, backend)) is OK
    unlimited = step(None, CollectorRegistry())
    for _ in range(3):
        assert (await unlimited(call(), backend)) is OK


async def test_limits_change_live() -> None:
    limited = step(limits(per_subject={"requests_per_minute": 1, "burst": 1}), CollectorRegistry())
    assert (await limited(call("ping"), backend)) is OK
    assert (await limited(call("ping"), backend)).status == 429
    # A bigger burst is room to grow into, not tokens handed out: the bucket keeps its level.
    limited.limits = limits(per_subject={"requests_per_minute": 1, "burst": 3})
    assert (await limited(call("ping"), backend)).status == 429
    limited.limits = limits(per_tool=[{"tool": "other", "requests_per_minute": 1, "burst": 1}])
    assert (await limited(call("ping"), backend)) is OK
    limited.limits = None
    assert (await limited(call("ping"), backend)) is OK


class DownStore:
    async def take(self, keys: Any, limits: Any) -> Verdict:
        raise StoreUnavailable("connection refused")

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(("mode", "status"), [("allow", 200), ("deny", 503)])
async def test_an_unreachable_store_follows_when_unavailable(mode: str, status: int) -> None:
    registry = CollectorRegistry()
    limited = RateLimitStep(
        limits(per_subject={"requests_per_minute": 1, "burst": 1}, when_unavailable=mode),
        store=DownStore(),
        metrics=RateLimitMetrics(registry),
    )
    reply = await limited(call("ping"), backend)
    assert reply.status == status
    outcome = "allowed" if mode == "allow" else "denied"
    assert (
        registry.get_sample_value(
            "moorage_proxy_rate_limit_store_errors_total", {"outcome": outcome}
        )
        == 1
    )
    if mode == "deny":
        assert reply.message is not None
        assert reply.message["error"]["code"] == -32000


async def test_the_memory_store_keeps_at_most_its_capacity() -> None:
    store = MemoryBuckets(3)
    limit = [BucketLimit(60, 1)]
    for subject in ("a", "b", "c", "d"):
        assert (await store.take([subject_key(subject)], limit)).allowed
    assert len(store) == 3
    # "a" was dropped (least recently used): it starts full again; "d" is still empty.
    assert (await store.take([subject_key("a")], limit)).allowed
    assert not (await store.take([subject_key("d")], limit)).allowed


def test_keys_hide_names_and_keep_subjects_apart() -> None:
    weird = "a:b\n" + "x" * 500
    assert weird not in subject_key(weird)
    assert len(subject_key(weird)) == len(subject_key("b"))
    assert tool_key("t", "alice", per_subject=True) != tool_key("t", "bob", per_subject=True)
    assert tool_key("t", "alice", per_subject=False) == tool_key("t", "bob", per_subject=False)


async def test_a_429_with_a_retry_hint_gets_retry_after_in_whole_seconds() -> None:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "error": {"code": -32000, "message": "x", "data": {"retryAfterMs": 1500}},
    }
    response = web.Response(
        status=429, body=json.dumps(body).encode(), content_type="application/json"
    )
    await add_retry_after(make_mocked_request("POST", "/mcp"), response)
    assert response.headers["Retry-After"] == "2"
    other = web.Response(status=429, body=b"{}", content_type="application/json")
    await add_retry_after(make_mocked_request("POST", "/mcp"), other)
    assert "Retry-After" not in other.headers
