"""Rate limits hold across three replicas behind HAProxy: what one subject is allowed in all is
one bucket's burst, however the balancer spreads its requests, with 429 and `Retry-After` on
HTTP and error -32000 with `retryAfterMs` for an SDK client."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from e2e.scaleout.scaleoutkit import STDIO_TIME, scaled_out, spread
from mcp import Client
from mcp.shared.exceptions import MCPError
from testkit.mcprequests import INITIALIZE, POST_HEADERS
from testkit.replicas import metric

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


async def test_a_subject_gets_one_burst_across_the_replicas(tmp_path: Path) -> None:
    burst = 5
    limits = {"per_subject": {"requests_per_minute": 1, "burst": burst}}
    async with scaled_out(tmp_path, STDIO_TIME, rate_limits=limits) as cluster:
        before = await cluster.served()
        statuses: list[int] = []
        retry_after: list[str | None] = []
        async with aiohttp.ClientSession() as http:
            for _ in range(12):
                async with http.post(cluster.mcp, json=INITIALIZE, headers=POST_HEADERS) as resp:
                    statuses.append(resp.status)
                    retry_after.append(resp.headers.get("Retry-After"))
        assert statuses.count(200) == burst, statuses
        assert statuses.count(429) == 12 - burst, statuses
        assert all(int(r or 0) >= 1 for s, r in zip(statuses, retry_after, strict=True) if s == 429)
        served = spread(before, await cluster.served())
        assert all(count >= 3 for count in served), served
        cluster.assert_alive()


async def test_a_tool_limit_holds_for_an_sdk_client_whose_calls_are_spread(tmp_path: Path) -> None:
    burst = 4
    limits = {"per_tool": [{"tool": "get_current_time", "requests_per_minute": 1, "burst": burst}]}
    async with (
        scaled_out(tmp_path, STDIO_TIME, rate_limits=limits) as cluster,
        Client(cluster.mcp, mode="legacy") as client,
    ):
        allowed, refused = 0, []
        for _ in range(9):
            try:
                await client.call_tool("get_current_time", {"timezone": "UTC"})
                allowed += 1
            except MCPError as exc:
                refused.append(exc)
        assert allowed == burst
        assert len(refused) == 9 - burst
        assert refused[0].error.code == -32000
        assert isinstance(refused[0].error.data, dict)
        assert 0 < refused[0].error.data["retryAfterMs"] <= 60_000
        counted = [
            await metric(r.base, "moorage_proxy_rate_limited_total") for r in cluster.replicas
        ]
        assert sum(counted) == len(refused)
        assert sum(1 for count in counted if count > 0) >= 2, counted
        cluster.assert_alive()
