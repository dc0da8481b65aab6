"""The harness itself: HAProxy in front of three replicas balances every request on its own
(one client's consecutive requests on one connection reach different replicas), and takes a
killed replica out and a restarted one back."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from e2e.scaleout.scaleoutkit import STDIO_TIME, scaled_out
from testkit.mcprequests import INITIALIZE, POST_HEADERS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


async def test_each_request_of_one_connection_goes_to_the_next_replica(tmp_path: Path) -> None:
    async with scaled_out(tmp_path, STDIO_TIME) as cluster:
        before = await cluster.served()
        # One aiohttp session: one keep-alive connection carries every request.
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as http:
            for _ in range(6):
                async with http.post(cluster.mcp, json=INITIALIZE, headers=POST_HEADERS) as resp:
                    assert resp.status == 200
                    await resp.read()
        after = await cluster.served()
        assert [b - a for a, b in zip(before, after, strict=True)] == [2, 2, 2]

        await cluster.kill(1)
        async with aiohttp.ClientSession() as http:
            for _ in range(4):
                async with http.post(cluster.mcp, json=INITIALIZE, headers=POST_HEADERS) as resp:
                    assert resp.status == 200
        await cluster.restart(1)
        cluster.assert_alive()
