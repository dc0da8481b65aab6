"""Redis going away behind three replicas and HAProxy: what needs the session storage is
answered 503 with JSON-RPC error -32000 naming it, what a replica holds goes on, nothing
crashes, and two clients interleaved only ever see their own answers; with Redis back every
session and new ones work without a restart. Raw HTTP, so that every status is seen.

Two ways Redis goes away: it hangs (SIGSTOP: connections stay open, commands time out; it comes
back with its data) and it stops (connections refused; it comes back empty, as a restarted
Redis without persistence would)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from e2e.proxy.proxykit import JSON, call, initialize_request
from e2e.scaleout.scaleoutkit import STDIO_TOOLBOX, ScaledOut, scaled_out
from testkit.replicas import metric
from testkit.waiting import eventually

from moorage_proxyrunner.protocol.sse import EventParser

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(280)]

NAMES = ("ada", "bob")


async def post(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, dict[str, Any] | None, Mapping[str, str]]:
    """Status, the JSON-RPC message answering `body` (from JSON or SSE), and the headers."""
    async with http.post(url, json=body, headers=headers) as resp:
        raw = await resp.read()
        if resp.content_type == "text/event-stream":
            events = EventParser().feed(raw)
            answers = [json.loads(e.data) for e in events if json.loads(e.data).get("id")]
            return resp.status, answers[-1] if answers else None, resp.headers
        return resp.status, json.loads(raw) if raw else None, resp.headers


async def open_session(http: aiohttp.ClientSession, url: str) -> dict[str, str] | None:
    """A new session's headers; None when it was refused with 503 (checked for its error)."""
    status, answer, headers = await post(http, url, initialize_request(), JSON)
    if status == 503:
        assert_storage_error(answer)
        return None
    assert status == 200, answer
    session = {**JSON, "Mcp-Session-Id": headers["Mcp-Session-Id"]}
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    async with http.post(url, json=note, headers=session) as resp:
        assert resp.status == 202
    return session


async def open_sessions(
    http: aiohttp.ClientSession, cluster: ScaledOut
) -> dict[str, dict[str, str]]:
    """A session for each of NAMES, with Redis up: their headers."""
    sessions = {name: await open_session(http, cluster.mcp) for name in NAMES}
    opened = {name: headers for name, headers in sessions.items() if headers is not None}
    assert len(opened) == len(NAMES)
    return opened


def assert_storage_error(answer: dict[str, Any] | None) -> None:
    assert answer is not None
    assert answer["error"]["code"] == -32000, answer
    assert "session storage" in answer["error"]["message"], answer


async def echo_round(
    http: aiohttp.ClientSession, cluster: ScaledOut, sessions: dict[str, dict[str, str]], tag: str
) -> list[int]:
    """Each session echoes its own text, interleaved; every answer is either the session's own
    text or the storage error. The statuses."""
    statuses = []
    for name, headers in sessions.items():
        text = f"{name} {tag}"
        status, answer, _ = await post(http, cluster.mcp, call("echo", {"text": text}), headers)
        statuses.append(status)
        if status == 503:
            assert_storage_error(answer)
        else:
            assert status == 200, answer
            assert answer is not None
            assert answer["result"]["content"][0]["text"] == text, (name, answer)
    return statuses


async def store_errors(cluster: ScaledOut) -> float:
    return sum(
        [await metric(r.base, "moorage_proxy_session_store_errors_total") for r in cluster.replicas]
    )


async def test_redis_hanging_gives_clear_errors_and_every_session_works_once_it_is_back(
    tmp_path: Path,
) -> None:
    async with scaled_out(tmp_path, STDIO_TOOLBOX) as cluster, aiohttp.ClientSession() as http:
        opened = await open_sessions(http, cluster)
        assert set(await echo_round(http, cluster, opened, "before")) == {200}
        assert cluster.redis.process is not None
        os.kill(cluster.redis.process.pid, signal.SIGSTOP)
        try:
            statuses: list[int] = []
            for round_ in range(3):
                statuses += await echo_round(http, cluster, opened, f"hung {round_}")
            assert 503 in statuses, "a replica that does not hold a session needs the store"
            assert await open_session(http, cluster.mcp) is None, "a new session needs it too"
            assert await store_errors(cluster) >= 1
            cluster.assert_alive()
        finally:
            os.kill(cluster.redis.process.pid, signal.SIGCONT)

        async def all_served() -> bool:
            return set(await echo_round(http, cluster, opened, "back")) == {200}

        await eventually(all_served, message="every session served again", timeout=30)
        for round_ in range(3):
            assert set(await echo_round(http, cluster, opened, f"after {round_}")) == {200}
        fresh = await open_session(http, cluster.mcp)
        assert fresh is not None
        assert set(await echo_round(http, cluster, {"carol": fresh}, "new")) == {200}
        cluster.assert_alive()


async def test_redis_stopped_gives_clear_errors_and_new_sessions_work_once_it_is_back(
    tmp_path: Path,
) -> None:
    async with scaled_out(tmp_path, STDIO_TOOLBOX) as cluster, aiohttp.ClientSession() as http:
        opened = await open_sessions(http, cluster)
        cluster.redis.stop()
        statuses: list[int] = []
        for round_ in range(3):
            statuses += await echo_round(http, cluster, opened, f"down {round_}")
        assert 503 in statuses
        assert await open_session(http, cluster.mcp) is None
        assert await store_errors(cluster) >= 1
        cluster.assert_alive()
        cluster.redis.start()

        async def new_session() -> dict[str, str] | None:
            return await open_session(http, cluster.mcp)

        fresh = await eventually(new_session, message="new sessions again", timeout=30)
        for round_ in range(3):
            assert set(await echo_round(http, cluster, {"dave": fresh}, f"new {round_}")) == {200}
        cluster.assert_alive()
