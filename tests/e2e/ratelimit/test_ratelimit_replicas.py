"""Rate limits shared by proxy replicas through a real Redis: three `moorage-proxyrunner run
--local` processes in front of the real `mcp-server-time`, one RunConfig each naming the same
Redis, and a real `mcp` SDK client per process, all the same (unauthenticated) subject.

The limit holds across the three (what they allow together is one bucket's burst, not three),
the SDK hands the caller error -32000 with `retryAfterMs`, HTTP answers carry 429 and
`Retry-After`; with Redis killed the proxies stay up and let requests through (the default
`when_unavailable: allow`), counting the failures in their metrics, or with `deny` tell the
client so; with Redis back the limits hold again.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from testkit.mcprequests import INITIALIZE, POST_HEADERS
from testkit.redisserver import RedisServer, running_redis
from testkit.replicas import is_healthy, metric, running_replicas
from testkit.waiting import eventually

pytestmark = pytest.mark.e2e

TIME_SERVER = (str(Path(sys.executable).parent / "mcp-server-time"), "--local-timezone", "UTC")
REPLICAS = 3
TOOL_BURST = 4


PASSWORD = "e2e-redis-password"  # a test server's password


def runconfig(redis: RedisServer, **rate_limits: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"address": redis.address, "key_prefix": "moorage:e2e:time:"}
    if redis.password is not None:
        settings["password"] = {"env": "MOORAGE_REDIS_PASSWORD"}
    return {
        "schema_version": "moorage/v1",
        "session_storage": {"type": "redis", "redis": settings},
        "rate_limits": rate_limits,
    }


@contextlib.contextmanager
def proxy_processes(
    config: dict[str, Any],
    directory: Path,
    *,
    env: dict[str, str] | None = None,
    count: int = REPLICAS,
) -> Iterator[list[str]]:
    """`count` proxy processes with `config` (and `env`); yields their base URLs."""
    with running_replicas(directory, config, ["--", *TIME_SERVER], count=count, env=env) as started:
        yield [replica.base for replica in started]
        for replica in started:
            assert replica.alive, replica.log.read_text()


@contextlib.asynccontextmanager
async def clients(bases: list[str]) -> AsyncIterator[list[Client]]:
    for base in bases:
        await eventually(lambda base=base: is_healthy(base), message=f"{base} healthy", timeout=90)
    async with contextlib.AsyncExitStack() as stack:
        opened = [
            await stack.enter_async_context(Client(streamable_http_client(f"{base}/mcp")))
            for base in bases
        ]
        yield opened


async def call_all(opened: list[Client], rounds: int) -> tuple[int, list[MCPError]]:
    """`rounds` calls of get_current_time on each client, round-robin: (successes, refusals)."""
    allowed, refused = 0, []
    for _ in range(rounds):
        for client in opened:
            try:
                await client.call_tool("get_current_time", {"timezone": "UTC"})
                allowed += 1
            except MCPError as exc:
                refused.append(exc)
    return allowed, refused


async def test_a_tool_limit_holds_across_three_replicas_and_survives_redis(
    tmp_path: Path,
) -> None:
    with running_redis(tmp_path) as redis:
        config = runconfig(
            redis,
            per_tool=[{"tool": "get_current_time", "requests_per_minute": 1, "burst": TOOL_BURST}],
        )
        with proxy_processes(config, tmp_path) as bases:
            async with clients(bases) as opened:
                allowed, refused = await call_all(opened, rounds=3)
                assert allowed == TOOL_BURST
                assert len(refused) == REPLICAS * 3 - TOOL_BURST
                error = refused[0].error
                assert error.code == -32000
                assert "get_current_time" in error.message
                assert isinstance(error.data, dict)
                assert error.data["scope"] == "tool"
                assert 0 < error.data["retryAfterMs"] <= 60_000
                assert sum(
                    [await metric(b, "moorage_proxy_rate_limited_total") for b in bases]
                ) == len(refused)
                # A legacy HTTP+SSE session gets the same error, on its stream.
                legacy = Client(sse_client(f"{bases[0]}/sse"), mode="legacy")
                async with legacy:
                    with pytest.raises(MCPError) as on_stream:
                        await legacy.call_tool("get_current_time", {"timezone": "UTC"})
                assert on_stream.value.error.code == -32000
                assert on_stream.value.error.data["scope"] == "tool"

                # Redis gone: every proxy stays up and lets calls through, and says so.
                redis.stop()
                allowed, refused = await call_all(opened, rounds=2)
                assert (allowed, refused) == (REPLICAS * 2, [])
                errors = [
                    await metric(b, "moorage_proxy_rate_limit_store_errors_total") for b in bases
                ]
                assert all(count >= 1 for count in errors), errors

                # Redis back (empty: it kept nothing): the limit holds again across replicas.
                redis.start()

                async def limited_again() -> bool:
                    _, refused = await call_all(opened, rounds=1)
                    return bool(refused)

                await eventually(limited_again, message="limits back with Redis", timeout=20)
                allowed, refused = await call_all(opened, rounds=2)
                assert allowed == 0
                assert len(refused) == REPLICAS * 2


async def test_a_subject_limit_is_one_bucket_for_replicas_using_a_password_with_429_and_retry_after(
    tmp_path: Path,
) -> None:
    burst = 5
    with running_redis(tmp_path, password=PASSWORD) as redis:
        config = runconfig(redis, per_subject={"requests_per_minute": 1, "burst": burst})
        env = {"MOORAGE_REDIS_PASSWORD": PASSWORD}
        with proxy_processes(config, tmp_path, env=env) as bases:
            for base in bases:
                await eventually(
                    lambda base=base: is_healthy(base), message=f"{base} healthy", timeout=90
                )
            statuses: list[int] = []
            retry_after: list[str | None] = []
            # Each `initialize` is a request of the subject like any other (and needs no session).
            async with aiohttp.ClientSession() as http:
                for index in range(12):
                    url = f"{bases[index % REPLICAS]}/mcp"
                    async with http.post(url, json=INITIALIZE, headers=POST_HEADERS) as resp:
                        statuses.append(resp.status)
                        retry_after.append(resp.headers.get("Retry-After"))
                        answer = await resp.json(content_type=None) if resp.status == 429 else None
            assert statuses.count(429) == 12 - burst, statuses
            assert all(
                r is not None and int(r) >= 1
                for s, r in zip(statuses, retry_after, strict=True)
                if s == 429
            )
            assert answer is not None
            assert answer["error"]["data"]["scope"] == "subject"


async def test_with_when_unavailable_deny_a_client_is_told_and_served_again(
    tmp_path: Path,
) -> None:
    with running_redis(tmp_path) as redis:
        config = runconfig(
            redis,
            per_subject={"requests_per_minute": 600, "burst": 100},
            when_unavailable="deny",
        )
        with proxy_processes(config, tmp_path, count=1) as bases:
            async with clients(bases) as (client,):
                await client.call_tool("get_current_time", {"timezone": "UTC"})
                redis.stop()
                with pytest.raises(MCPError) as refused:
                    await client.call_tool("get_current_time", {"timezone": "UTC"})
                assert refused.value.error.code == -32000
                assert "cannot be checked now" in refused.value.error.message
                assert await metric(bases[0], "moorage_proxy_rate_limit_store_errors_total") >= 1
                redis.start()

                async def served() -> bool:
                    try:
                        await client.call_tool("get_current_time", {"timezone": "UTC"})
                    except MCPError:
                        return False
                    return True

                await eventually(served, message="served again with Redis back", timeout=20)
