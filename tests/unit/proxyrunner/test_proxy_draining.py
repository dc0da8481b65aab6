"""The handover on SIGTERM: what a draining replica refuses, what it still serves, and the order
in which it lets go (requests answered, then streams ended, then the sessions handed over)."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from testkit.endpoints import Idle

from moorage_core.settings import SettingError
from moorage_proxyrunner.config.limits import add_drain_argument, drain_timeout_from
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.front.app import make_app, serve
from moorage_proxyrunner.front.draining import SHUTTING_DOWN, is_stream, opens_session
from moorage_proxyrunner.front.metrics import ProxyMetrics


@pytest.mark.parametrize(
    ("method", "path", "session_id", "mcp_method", "opens"),
    [
        ("POST", "/mcp", None, None, True),
        ("POST", "/mcp", None, "initialize", True),
        ("POST", "/mcp", "s1", None, False),
        ("POST", "/mcp", None, "tools/call", False),
        ("POST", "/mcp", None, "subscriptions/listen", True),
        ("GET", "/sse", None, None, True),
        ("GET", "/mcp", "s1", None, False),
        ("POST", "/messages", None, None, False),
        ("DELETE", "/mcp", "s1", None, False),
    ],
    ids=[
        "initialize-without-header",
        "initialize",
        "legacy-session-request",
        "modern-request",
        "modern-listen",
        "legacy-sse-stream",
        "session-stream",
        "legacy-sse-message",
        "session-delete",
    ],
)
def test_only_what_would_open_a_session_here_is_refused(
    method: str, path: str, session_id: str | None, mcp_method: str | None, opens: bool
) -> None:
    assert opens_session(method, path=path, session_id=session_id, mcp_method=mcp_method) is opens


@pytest.mark.parametrize(
    ("method", "mcp_method", "stream"),
    [
        ("GET", None, True),
        ("POST", "subscriptions/listen", True),
        ("POST", "tools/call", False),
        ("POST", None, False),
        ("DELETE", None, False),
    ],
    ids=["get", "listen", "call", "legacy-post", "delete"],
)
def test_streams_are_not_waited_for(method: str, mcp_method: str | None, stream: bool) -> None:
    assert is_stream(method, mcp_method=mcp_method) is stream


class _SlowBackend(Idle):
    """Endpoints whose POST answers when `release` is set and whose GET stream lasts until
    `close_streams`; `owed` answers are still to go on a stream (`unanswered`); `events`
    records the order of what the drain did."""

    def __init__(self) -> None:
        self.metrics = ProxyMetrics(CollectorRegistry())
        self.release = asyncio.Event()
        self.streams_closed = asyncio.Event()
        self.events: list[str] = []
        self.owed = 0

    def unanswered(self) -> int:
        return self.owed

    def add_routes(self, app: web.Application) -> None:
        async def post(request: web.Request) -> web.Response:
            if request.headers.get("X-Slow"):
                await self.release.wait()
                self.events.append("answered")
            return web.json_response({"jsonrpc": "2.0", "id": 1, "result": {}})

        async def get(request: web.Request) -> web.StreamResponse:
            stream = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await stream.prepare(request)
            await self.streams_closed.wait()
            self.events.append("stream-ended")
            await stream.write_eof()
            return stream

        app.router.add_post("/mcp", post)
        app.router.add_get("/mcp", get)

    async def close_streams(self) -> None:
        self.events.append("close-streams")
        self.streams_closed.set()


SESSION = {"Mcp-Session-Id": "s1", "Content-Type": "application/json"}
NEW = {"Content-Type": "application/json"}


async def _serving(
    backend: _SlowBackend, *, drain_timeout: float
) -> tuple[str, asyncio.Event, asyncio.Task[None]]:
    settings = ProxyRunnerSettings(port=0, drain_timeout=drain_timeout)
    app = make_app(settings, endpoints=backend, registry=CollectorRegistry())
    stop = asyncio.Event()
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def handover() -> None:
        backend.events.append("handover")

    task = asyncio.create_task(
        serve(
            app,
            settings,
            stop=stop,
            on_listening=port.set_result,
            handle_signals=False,
            handover=handover,
        )
    )
    return f"http://127.0.0.1:{await port}", stop, task


async def _post(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[int, Any, str]:
    async with http.post(url, data=b"{}", headers=headers) as resp:
        return resp.status, await resp.json(), resp.headers.get("Connection", "")


async def test_a_draining_replica_refuses_new_sessions_and_serves_its_own() -> None:
    backend = _SlowBackend()
    base, stop, task = await _serving(backend, drain_timeout=30)
    async with aiohttp.ClientSession() as http:
        stream = await http.get(f"{base}/mcp", headers={"Mcp-Session-Id": "s1"})
        slow = asyncio.ensure_future(_post(http, f"{base}/mcp", {**SESSION, "X-Slow": "1"}))
        await asyncio.sleep(0.1)
        stop.set()
        await asyncio.sleep(0.1)

        async with http.get(f"{base}/health") as resp:
            assert resp.status == 503
        status, body, connection = await _post(http, f"{base}/mcp", NEW)
        assert (status, body["error"]["code"], body["error"]["message"]) == (
            503,
            -32000,
            SHUTTING_DOWN,
        )
        assert connection.lower() == "close"
        status, body, connection = await _post(http, f"{base}/mcp", SESSION)
        assert (status, body["result"], connection.lower()) == (200, {}, "close")
        # The open stream does not hold the drain up, and is not ended before the answer.
        assert backend.events == []

        backend.release.set()
        status, _, _ = await slow
        assert status == 200
        await asyncio.wait_for(task, timeout=5)
        assert (await stream.read()) == b""
        stream.release()
    assert backend.events == ["answered", "close-streams", "stream-ended", "handover"]


async def test_the_drain_timeout_cuts_a_request_that_does_not_finish() -> None:
    backend = _SlowBackend()
    base, stop, task = await _serving(backend, drain_timeout=0.5)
    async with aiohttp.ClientSession() as http:
        slow = asyncio.ensure_future(_post(http, f"{base}/mcp", {**SESSION, "X-Slow": "1"}))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, timeout=5)
        assert time.monotonic() - started < 0.5 + 1.0
        with pytest.raises(aiohttp.ClientError):
            await slow
    assert backend.events == ["close-streams", "handover"]


async def test_the_drain_waits_for_answers_owed_on_a_stream() -> None:
    backend = _SlowBackend()
    backend.owed = 1
    _, stop, task = await _serving(backend, drain_timeout=30)
    stop.set()
    await asyncio.sleep(0.3)
    assert backend.events == []
    assert not task.done()
    backend.events.append("answered-on-stream")
    backend.owed = 0
    await asyncio.wait_for(task, timeout=5)
    assert backend.events == ["answered-on-stream", "close-streams", "handover"]


async def test_the_drain_timeout_cuts_an_answer_owed_on_a_stream() -> None:
    backend = _SlowBackend()
    backend.owed = 1
    _, stop, task = await _serving(backend, drain_timeout=0.5)
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert 0.5 <= time.monotonic() - started < 0.5 + 1.0
    assert backend.events == ["close-streams", "handover"]


@pytest.mark.parametrize(
    ("flag", "env", "seconds"),
    [
        (None, {}, 10.0),
        (None, {"MOORAGE_DRAIN_TIMEOUT": "30s"}, 30.0),
        ("5", {"MOORAGE_DRAIN_TIMEOUT": "30s"}, 5.0),
        ("1m", {}, 60.0),
    ],
    ids=["default", "env", "flag-wins", "duration"],
)
def test_the_drain_timeout_comes_from_the_flag_or_the_environment(
    flag: str | None, env: dict[str, str], seconds: float
) -> None:
    parser = argparse.ArgumentParser()
    add_drain_argument(parser)
    args = parser.parse_args([] if flag is None else ["--drain-timeout", flag])
    assert drain_timeout_from(args, environ=env) == seconds


def test_an_unusable_drain_timeout_names_its_variable_and_flag() -> None:
    parser = argparse.ArgumentParser()
    add_drain_argument(parser)
    with pytest.raises(
        SettingError,
        match=r"MOORAGE_DRAIN_TIMEOUT \(--drain-timeout\): '0s' must be longer than zero",
    ):
        drain_timeout_from(parser.parse_args([]), environ={"MOORAGE_DRAIN_TIMEOUT": "0s"})
