"""SIGTERM drains: the proxy stops accepting, finishes what is in flight, and exits cleanly."""

from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp
import pytest
from proxykit import (
    JSON,
    TOOLBOX,
    call,
    free_port,
    initialize,
    is_healthy,
    running_proxy,
    scraped,
    serving_toolbox,
)
from testkit.waiting import eventually

from moorage_proxyrunner.startup.local import LocalBackend

pytestmark = pytest.mark.e2e

PROXY = (sys.executable, "-m", "moorage_proxyrunner")


async def test_sigterm_lets_the_call_in_flight_finish_then_exits_zero() -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *PROXY,
        "run",
        "--local",
        "--port",
        str(port),
        "--log-format",
        "json",
        "--",
        *TOOLBOX,
        "stdio",
    )
    base = f"http://127.0.0.1:{port}"

    async def call_in_flight() -> bool:
        return await scraped(base, "moorage_proxy_backend_inflight_requests") == 1.0

    try:
        await eventually(lambda: is_healthy(f"{base}/health"), message="proxy healthy")
        async with aiohttp.ClientSession() as http:
            session_id = await initialize(http, f"{base}/mcp")
            headers = {**JSON, "Mcp-Session-Id": session_id}
            request = asyncio.ensure_future(
                http.post(f"{base}/mcp", json=call("wait", {"seconds": 1.5}), headers=headers)
            )
            await eventually(call_in_flight, message="call in flight")
            process.send_signal(signal.SIGTERM)
            async with await request as resp:
                answer = await resp.json()
        assert answer["result"]["content"][0]["text"] == "waited 1.5"
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0
        assert not await is_healthy(f"{base}/health")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_draining_ends_relayed_streams_instead_of_waiting_for_them() -> None:
    # A drain timeout far beyond the test's own: only ending the relayed GET stream lets the
    # proxy stop in time.
    async with serving_toolbox("http") as url:
        backend = LocalBackend(transport="streamable-http", target_urls=(url,))
        async with (
            running_proxy(backend, drain_timeout=3600) as proxy,
            aiohttp.ClientSession() as http,
        ):
            session_id = await initialize(http, proxy.mcp)
            stream = await http.get(
                proxy.mcp, headers={"Accept": "text/event-stream", "Mcp-Session-Id": session_id}
            )
            assert stream.status == 200
            proxy.stop.set()
            await proxy.task
            await stream.content.read()  # returns: the stream ended
            assert stream.content.at_eof()
            stream.release()
