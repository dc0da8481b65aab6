"""SIGTERM hands over: the proxy says it is not ready, refuses new sessions while it serves its
own, finishes what is in flight, ends its streams and exits cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.types import TextContent
from proxykit import (
    JSON,
    TOOLBOX,
    call,
    free_port,
    initialize,
    initialize_request,
    is_healthy,
    running_proxy,
    scraped,
    serving_toolbox,
)
from testkit.waiting import eventually

from moorage_proxyrunner.startup.local import LocalBackend

pytestmark = pytest.mark.e2e

PROXY = (sys.executable, "-m", "moorage_proxyrunner")


async def _toolbox_proxy(
    env: dict[str, str] | None = None,
) -> tuple[asyncio.subprocess.Process, str]:
    """`run --local` in front of the toolbox on stdio, as a process; its base URL."""
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
        env=env,
    )
    return process, f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def _proxy_process(
    env: dict[str, str] | None = None,
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """`_toolbox_proxy`, killed at the end if it has not exited."""
    process, base = await _toolbox_proxy(env)
    try:
        yield process, base
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _call_in_flight(
    http: aiohttp.ClientSession, base: str, *, seconds: float
) -> tuple[dict[str, str], asyncio.Future[aiohttp.ClientResponse]]:
    """Once the proxy is healthy: a session's headers, and its `wait` call, at the server."""

    async def call_in_flight() -> bool:
        return await scraped(base, "moorage_proxy_backend_inflight_requests") == 1.0

    await eventually(lambda: is_healthy(f"{base}/health"), message="proxy healthy")
    session_id = await initialize(http, f"{base}/mcp")
    headers = {**JSON, "Mcp-Session-Id": session_id}
    request = asyncio.ensure_future(
        http.post(f"{base}/mcp", json=call("wait", {"seconds": seconds}), headers=headers)
    )
    await eventually(call_in_flight, message="call in flight")
    return headers, request


async def test_sigterm_lets_the_call_in_flight_finish_then_exits_zero() -> None:
    async with _proxy_process() as (process, base):
        async with aiohttp.ClientSession() as http:
            _, request = await _call_in_flight(http, base, seconds=1.5)
            process.send_signal(signal.SIGTERM)
            async with await request as resp:
                answer = await resp.json()
        assert answer["result"]["content"][0]["text"] == "waited 1.5"
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0
        assert not await is_healthy(f"{base}/health")


async def test_a_draining_proxy_refuses_new_sessions_and_serves_its_own() -> None:
    async with _proxy_process({**os.environ, "MOORAGE_DRAIN_TIMEOUT": "20s"}) as (process, base):
        async with aiohttp.ClientSession() as http:
            headers, slow = await _call_in_flight(http, base, seconds=3.5)
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            await eventually(lambda: _unready(base), message="not ready once signalled")

            async with http.post(f"{base}/mcp", json=initialize_request(), headers=JSON) as resp:
                refused = (resp.status, (await resp.json())["error"])
            assert refused[0] == 503
            assert refused[1]["code"] == -32000
            assert "shutting down" in refused[1]["message"]
            async with http.post(
                f"{base}/mcp", json=call("echo", {"text": "still here"}, 8), headers=headers
            ) as resp:
                assert resp.status == 200
                served = await resp.json()
            assert served["result"]["content"][0]["text"] == "still here"

            async with await slow as resp:
                answer = await resp.json()
        assert answer["result"]["content"][0]["text"] == "waited 3.5"
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0
        assert time.monotonic() - signalled < 20


async def _unready(base: str) -> bool:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/health") as resp:
        return resp.status == 503


async def _sse_wait(url: str, seconds: float) -> str:
    """A legacy HTTP+SSE client (the `mcp` SDK) calls `wait`; the text of its answer. The call
    is answered 202 and its answer comes on the session's stream."""
    async with sse_client(url) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        # The SDK checks a tool's answer against its listed schema, and would list the tools
        # after the answer, when the stream has ended: they are listed first.
        await client.list_tools()
        result = await client.call_tool("wait", {"seconds": seconds})
    content = result.content[0]
    assert isinstance(content, TextContent)
    return content.text


async def _stdio_sse_call(base: str, seconds: float) -> asyncio.Task[str]:
    """Once the proxy is healthy: a legacy HTTP+SSE client's `wait` call, at the server."""

    async def call_in_flight() -> bool:
        return await scraped(base, "moorage_proxy_backend_inflight_requests") == 1.0

    await eventually(lambda: is_healthy(f"{base}/health"), message="proxy healthy")
    answer = asyncio.create_task(_sse_wait(f"{base}/sse", seconds))
    await eventually(call_in_flight, message="call in flight")
    return answer


async def test_sigterm_writes_the_answer_owed_on_a_legacy_sse_stream_then_exits_zero() -> None:
    async with _proxy_process({**os.environ, "MOORAGE_DRAIN_TIMEOUT": "20s"}) as (process, base):
        answer = await _stdio_sse_call(base, 2.0)
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert await asyncio.wait_for(answer, timeout=20) == "waited 2.0"
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0
        assert time.monotonic() - signalled < 20


async def test_an_answer_owed_on_a_legacy_sse_stream_waits_no_longer_than_the_drain() -> None:
    async with _proxy_process({**os.environ, "MOORAGE_DRAIN_TIMEOUT": "1s"}) as (process, base):
        answer = await _stdio_sse_call(base, 60.0)
        try:
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            assert await asyncio.wait_for(process.wait(), timeout=30) == 0
            assert 1.0 <= time.monotonic() - signalled < 1.0 + 2.0
            assert not answer.done() or answer.exception() is not None
        finally:
            answer.cancel()


async def test_draining_waits_for_an_answer_relayed_on_a_legacy_sse_stream() -> None:
    async with serving_toolbox("sse") as url:
        backend = LocalBackend(transport="sse", target_urls=(url,))
        async with running_proxy(backend, drain_timeout=20) as proxy:
            answer = asyncio.create_task(_sse_wait(proxy.sse, 2.0))
            # Counted once answered 202: the answer is owed on the stream from then on.
            await eventually(
                lambda: (
                    proxy.metric(
                        "moorage_proxy_requests_total", {"method": "tools/call", "status": "ok"}
                    )
                    == 1
                ),
                message="call accepted",
            )
            proxy.stop.set()
            assert await asyncio.wait_for(answer, timeout=20) == "waited 2.0"
            await asyncio.wait_for(proxy.task, timeout=20)


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
