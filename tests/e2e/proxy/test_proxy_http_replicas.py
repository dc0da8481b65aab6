"""HTTP backends behind three proxy replicas sharing their sessions through a real Redis: three
`moorage-proxyrunner run --local` processes in front of one toolbox server (streamable HTTP, or
legacy HTTP+SSE), each request of a session sent to the replica the test picks by URL.

With the test OIDC issuer on, a streamable-HTTP session opened on one replica goes on on the
others (served there directly: the session lives in the server), its GET stream is relayed by
the replica that opened it, another subject presenting its id gets the 404 of an unknown
session on every replica, and killing the replica that answered `initialize` loses nothing: the
next request elsewhere succeeds and the GET stream is adopted. A legacy HTTP+SSE session's POSTs
on other replicas are forwarded to the one holding its stream and answered there; with that
replica gone the session is over (404). An `mcp` SDK client whose requests rotate over the
replicas is served throughout. With Redis stopped a new session is refused with 503 and
JSON-RPC error -32000 saying why, sessions a replica holds go on, nothing crashes; with Redis
back new sessions open again.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import pytest
from e2e.proxy.proxykit import (
    JSON,
    call,
    initialize_request,
    next_sse_events,
    serving_toolbox,
)
from e2e.scaleout.scaleoutkit import http_backend, runconfig
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from testkit.issuer import LocalIssuer, serving_issuer
from testkit.redisserver import running_redis
from testkit.replicas import Replica, is_healthy, metric, running_replicas
from testkit.waiting import eventually

from moorage_proxyrunner.protocol.sse import EventParser

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

TOOLS_LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


async def all_healthy(started: list[Replica]) -> list[str]:
    for replica in started:
        await eventually(
            lambda base=replica.base: is_healthy(base),
            message=f"{replica.base} healthy",
            timeout=90,
        )
    return [replica.base for replica in started]


@contextlib.asynccontextmanager
async def authenticated_replicas(
    directory: Path, transport: str
) -> AsyncIterator[tuple[LocalIssuer, list[Replica], list[str]]]:
    """Three healthy replicas with OIDC on, sharing a Redis, in front of the toolbox server
    on `transport` ("http" or "sse"): the issuer, the replicas and their base URLs."""
    kind = "sse" if transport == "sse" else "streamable-http"
    with running_redis(directory) as redis:
        async with serving_issuer() as issuer, serving_toolbox(transport) as url:
            oidc = {"type": "oidc", "issuer": issuer.url, "audience": issuer.audience}
            config = runconfig(redis, oidc=oidc)
            with running_replicas(directory, config, http_backend(kind, url), count=3) as started:
                yield issuer, started, await all_healthy(started)


def bearer(token: str | None) -> dict[str, str]:
    return {**JSON, **({"Authorization": f"Bearer {token}"} if token else {})}


async def post(
    http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str]
) -> tuple[int, Any]:
    """POST `body`; the status and the JSON-RPC message of the answer (JSON or SSE)."""
    async with http.post(url, json=body, headers=headers) as resp:
        text = await resp.text()
        if resp.content_type == "text/event-stream":
            events = EventParser().feed(text.encode())
            return resp.status, json.loads(events[-1].data)
        is_json = resp.content_type == "application/json" and text.strip()
        return resp.status, json.loads(text) if is_json else text


async def open_session(http: aiohttp.ClientSession, base: str, headers: dict[str, str]) -> str:
    async with http.post(f"{base}/mcp", json=initialize_request(), headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        session = resp.headers["Mcp-Session-Id"]
    status, _ = await post(http, f"{base}/mcp", INITIALIZED, {**headers, "Mcp-Session-Id": session})
    assert status == 202
    return session


def rotating(bases: list[str], *, methods: frozenset[str]) -> Any:
    """An httpx request hook sending each request of `methods` to the next of `bases`."""
    ports = itertools.cycle([httpx2.URL(base).port for base in bases])

    async def hook(request: httpx2.Request) -> None:
        if request.method in methods:
            request.url = request.url.copy_with(port=next(ports))

    return hook


@contextlib.asynccontextmanager
async def rotating_client(bases: list[str], token: str | None) -> AsyncIterator[Client]:
    """An SDK client on streamable HTTP whose every request goes to the next replica."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with create_mcp_http_client(headers=headers) as http:
        http.event_hooks["request"].append(
            rotating(bases, methods=frozenset({"POST", "GET", "DELETE"}))
        )
        async with Client(streamable_http_client(f"{bases[0]}/mcp", http_client=http)) as client:
            yield client


async def test_a_streamable_http_session_goes_on_on_every_replica_and_outlives_its_opener(
    tmp_path: Path,
) -> None:
    async with authenticated_replicas(tmp_path, "http") as (issuer, started, bases):
        alice = bearer(issuer.token(sub="alice"))
        mallory = bearer(issuer.token(sub="mallory"))
        async with aiohttp.ClientSession() as http:
            session = await open_session(http, bases[0], alice)
            owned = {**alice, "Mcp-Session-Id": session}
            status, listed = await post(http, f"{bases[1]}/mcp", TOOLS_LIST, owned)
            assert status == 200
            assert "echo" in [tool["name"] for tool in listed["result"]["tools"]]
            echo = call("echo", {"text": "from three"})
            status, echoed = await post(http, f"{bases[2]}/mcp", echo, owned)
            assert status == 200
            assert "from three" in json.dumps(echoed["result"])

            # Another subject holding the id: an unknown session, on every replica.
            stolen = {**mallory, "Mcp-Session-Id": session}
            unknown = {**mallory, "Mcp-Session-Id": "no-such-session"}
            for base in bases:
                refused = await post(http, f"{base}/mcp", TOOLS_LIST, stolen)
                assert refused == await post(http, f"{base}/mcp", TOOLS_LIST, unknown)
                assert refused[0] == 404
                async with http.get(f"{base}/mcp", headers=stolen) as resp:
                    assert resp.status == 404

            # The GET stream is the opener's: replica 2 forwards it there.
            async with http.get(f"{bases[1]}/mcp", headers=owned) as resp:
                assert resp.status == 200
                assert resp.content_type == "text/event-stream"
            assert await metric(bases[1], "moorage_proxy_requests_forwarded_total") >= 1

            # The replica that answered `initialize` dies: nothing is lost.
            started[0].kill()
            status, echoed = await post(http, f"{bases[1]}/mcp", echo, owned)
            assert status == 200
            assert "from three" in json.dumps(echoed["result"])
            async with http.get(f"{bases[2]}/mcp", headers=owned) as resp:
                assert resp.status == 200
                assert resp.content_type == "text/event-stream"
            assert await metric(bases[2], "moorage_proxy_sessions_adopted_total") >= 1
            refused = await post(http, f"{bases[2]}/mcp", TOOLS_LIST, stolen)
            assert refused[0] == 404

        # A real SDK client whose requests land on the two replicas left, in turn.
        async with rotating_client(bases[1:], issuer.token(sub="alice")) as client:
            tools = await client.list_tools()
            assert "echo" in [tool.name for tool in tools.tools]
            for index in range(4):
                result = await client.call_tool("echo", {"text": f"turn {index}"})
                assert f"turn {index}" in result.content[0].text  # type: ignore[union-attr]


async def test_a_legacy_sse_session_is_answered_on_its_stream_from_every_replica(
    tmp_path: Path,
) -> None:
    async with authenticated_replicas(tmp_path, "sse") as (issuer, started, bases):
        alice = bearer(issuer.token(sub="alice"))
        mallory = bearer(issuer.token(sub="mallory"))
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{bases[0]}/sse", headers=alice) as stream,
        ):
            parser = EventParser()
            events = await next_sse_events(stream, parser)
            assert events[0].event == "endpoint"
            path = events[0].data[events[0].data.index("/messages") :]

            async def answer_on_stream(request_id: int) -> Any:
                while True:
                    for event in await next_sse_events(stream, parser):
                        message = json.loads(event.data) if event.data else None
                        if isinstance(message, dict) and message.get("id") == request_id:
                            return message

            status, _ = await post(http, bases[1] + path, initialize_request(1), alice)
            assert status == 202
            assert "serverInfo" in (await answer_on_stream(1))["result"]
            status, _ = await post(http, bases[2] + path, INITIALIZED, alice)
            assert status == 202
            status, _ = await post(http, bases[2] + path, TOOLS_LIST, alice)
            assert status == 202
            listed = await answer_on_stream(2)
            assert "echo" in [tool["name"] for tool in listed["result"]["tools"]]
            status, _ = await post(http, bases[1] + path, call("echo", {"text": "via two"}), alice)
            assert status == 202
            assert "via two" in json.dumps((await answer_on_stream(7))["result"])
            assert await metric(bases[1], "moorage_proxy_requests_forwarded_total") >= 2

            # Another subject: the 404 of an unknown session, and nothing forwarded.
            for base in bases:
                status, refused = await post(http, base + path, TOOLS_LIST, mallory)
                assert status == 404
                assert refused["error"]["message"] == "Session not found"

            # The stream's replica dies: the session is over everywhere else.
            started[0].kill()
            for base in bases[1:]:
                status, gone = await post(http, base + path, TOOLS_LIST, alice)
                assert status == 404
                assert gone["error"]["message"] == "Session not found"

        # An SDK client whose stream is on one replica and whose POSTs rotate over both.
        headers = {"Authorization": f"Bearer {issuer.token(sub='alice')}"}

        def factory(**options: Any) -> httpx2.AsyncClient:
            client = create_mcp_http_client(**options)
            client.event_hooks["request"].append(rotating(bases[1:], methods=frozenset({"POST"})))
            return client

        transport = sse_client(f"{bases[1]}/sse", headers=headers, httpx_client_factory=factory)
        forwarded = "moorage_proxy_requests_forwarded_total"
        before = await metric(bases[2], forwarded, outcome="ok")
        async with Client(transport, mode="legacy") as client:
            for index in range(4):
                result = await client.call_tool("echo", {"text": f"post {index}"})
                assert f"post {index}" in result.content[0].text  # type: ignore[union-attr]
        # Half its POSTs (initialize, initialized, four calls) went through replica 3.
        assert await metric(bases[2], forwarded, outcome="ok") - before == 3


async def test_without_redis_new_sessions_are_refused_held_ones_go_on_and_all_come_back(
    tmp_path: Path,
) -> None:
    with running_redis(tmp_path) as redis:
        async with serving_toolbox("http") as url:
            backend = http_backend("streamable-http", url)
            with running_replicas(tmp_path, runconfig(redis), backend, count=3) as started:
                bases = await all_healthy(started)
                async with aiohttp.ClientSession() as http:
                    session = await open_session(http, bases[0], JSON)
                    held = {**JSON, "Mcp-Session-Id": session}
                    echo = call("echo", {"text": "still here"})

                    redis.stop()
                    for base in bases:
                        status, refused = await post(
                            http, f"{base}/mcp", initialize_request(), JSON
                        )
                        assert status == 503
                        assert refused["error"]["code"] == -32000
                        assert "session storage" in refused["error"]["message"]
                    # The replica holding the session serves it from what it knows.
                    status, echoed = await post(http, f"{bases[0]}/mcp", echo, held)
                    assert status == 200
                    assert "still here" in json.dumps(echoed["result"])
                    assert await metric(bases[0], "moorage_proxy_session_store_errors_total") >= 1

                    redis.start()

                    async def opens(base: str) -> bool:
                        async with http.post(
                            f"{base}/mcp", json=initialize_request(), headers=JSON
                        ) as resp:
                            return resp.status == 200

                    # Each replica finds Redis back by itself, within a second of trying.
                    for base in bases:
                        await eventually(
                            lambda base=base: opens(base), message=f"{base} opens", timeout=30
                        )
                    again = await open_session(http, bases[2], JSON)
                    status, echoed = await post(
                        http, f"{bases[0]}/mcp", echo, {**JSON, "Mcp-Session-Id": again}
                    )
                    assert status == 200
                for replica in started:
                    assert replica.alive, replica.log.read_text()[-3000:]
