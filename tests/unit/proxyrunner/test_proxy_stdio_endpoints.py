"""`BridgeEndpoints` through the HTTP front end over a scripted stdio server (the fake at the
seam): one handshake shared by every session, ids remapped per client, sessions that only their
subject may use, and the hooks a RunConfig reload calls (`announcer`, `rechecker`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from testkit.mcprequests import INITIALIZE, POST_HEADERS
from testkit.stdiochannels import INIT_RESULT, ScriptedServer
from testkit.subjects import subject_header
from testkit.waiting import eventually

from moorage_proxyrunner.backends.stdio.bridge import StdioBridge
from moorage_proxyrunner.backends.stdio.endpoints import BridgeEndpoints
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.front.app import make_app
from moorage_proxyrunner.front.metrics import ProxyMetrics
from moorage_proxyrunner.protocol.pipeline import Identity, Pipeline


@dataclass
class Front:
    """The proxy's HTTP front (`client`) over `endpoints`, whose server the test plays."""

    client: TestClient[Any, Any]
    endpoints: BridgeEndpoints
    scripted: ScriptedServer

    async def post(
        self, body: dict[str, Any], *, session: str | None = None, subject: str | None = None
    ) -> aiohttp.ClientResponse:
        headers = dict(POST_HEADERS)
        if session is not None:
            headers["Mcp-Session-Id"] = session
        if subject is not None:
            headers["X-Subject"] = subject
        return await self.client.post("/mcp", json=body, headers=headers)

    async def session(self, subject: str | None = None) -> str:
        resp = await self.post(INITIALIZE, subject=subject)
        assert resp.status == 200, await resp.text()
        return resp.headers["Mcp-Session-Id"]


def request(request_id: Any, method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


@contextlib.asynccontextmanager
async def front() -> AsyncIterator[Front]:
    scripted = ScriptedServer()
    bridge = StdioBridge(scripted.factory, backoff_initial=0.01, backoff_max=0.05)
    registry = CollectorRegistry()
    settings = ProxyRunnerSettings(port=0, keepalive_interval=0.1)
    endpoints = BridgeEndpoints(
        bridge, settings=settings, pipeline=Pipeline(), metrics=ProxyMetrics(registry)
    )
    app = make_app(settings, endpoints=endpoints, registry=registry)
    app.middlewares.append(subject_header)
    async with TestClient(TestServer(app)) as client:
        assert await bridge.wait_connected(10)
        yield Front(client, endpoints, scripted)


async def test_sessions_are_answered_from_the_one_handshake_with_the_server() -> None:
    async with front() as proxy:
        first = await proxy.post(INITIALIZE)
        await proxy.session()
        answer = await first.json()
        assert answer["id"] == INITIALIZE["id"]
        assert answer["result"]["serverInfo"] == INIT_RESULT["serverInfo"]
        # The server saw one initialize (the bridge's, answered by the testkit) and nothing of
        # the clients' two: the next message it reads is the client call sent now.
        session = first.headers["Mcp-Session-Id"]
        call = asyncio.create_task(proxy.post(request(5, "tools/list", {}), session=session))
        seen = await proxy.scripted.server.read()
        assert seen["method"] == "tools/list"
        proxy.scripted.server.write({"jsonrpc": "2.0", "id": seen["id"], "result": {"tools": []}})
        assert (await (await call).json())["result"] == {"tools": []}


async def test_clients_reusing_an_id_get_their_own_answers() -> None:
    async with front() as proxy:
        sessions = [await proxy.session(), await proxy.session()]
        calls = [
            asyncio.create_task(
                proxy.post(request(1, "tools/call", {"name": "echo"}), session=session)
            )
            for session in sessions
        ]
        first = await proxy.scripted.server.read("tools/call")
        second = await proxy.scripted.server.read("tools/call")
        assert first["id"] != second["id"]
        proxy.scripted.server.write(
            {"jsonrpc": "2.0", "id": second["id"], "result": {"n": "second"}}
        )
        proxy.scripted.server.write({"jsonrpc": "2.0", "id": first["id"], "result": {"n": "first"}})
        answers = [await (await task).json() for task in calls]
        assert {a["id"] for a in answers} == {1}
        assert sorted(a["result"]["n"] for a in answers) == ["first", "second"]


async def test_another_subject_is_answered_as_for_an_unknown_session() -> None:
    async with front() as proxy:
        session = await proxy.session(subject="alice")
        call = request(2, "tools/list", {})
        unknown = await proxy.post(call, session="no-such-session", subject="bob")
        foreign = await proxy.post(call, session=session, subject="bob")
        assert unknown.status == foreign.status == 404
        assert await unknown.json() == await foreign.json()


async def test_a_deleted_session_is_gone() -> None:
    async with front() as proxy:
        session = await proxy.session()
        deleted = await proxy.client.delete("/mcp", headers={"Mcp-Session-Id": session})
        assert deleted.status < 300
        resp = await proxy.post(request(3, "tools/list", {}), session=session)
        assert resp.status == 404


async def test_the_announcer_reaches_an_open_session_stream() -> None:
    async with front() as proxy:
        session = await proxy.session()
        stream = await proxy.client.get(
            "/mcp", headers={"Accept": "text/event-stream", "Mcp-Session-Id": session}
        )
        assert stream.status == 200
        announce = proxy.endpoints.announcer()
        announce("notifications/tools/list_changed")
        while True:
            block = await asyncio.wait_for(stream.content.readuntil(b"\n\n"), timeout=10)
            data = [line for line in block.decode().splitlines() if line.startswith("data: {")]
            if data:
                break
        assert json.loads(data[0].removeprefix("data: ")) == {
            "jsonrpc": "2.0",
            "method": "notifications/tools/list_changed",
        }
        stream.close()


async def test_the_rechecker_ends_a_subscription_the_policy_no_longer_allows() -> None:
    async with front() as proxy:
        session = await proxy.session(subject="alice")
        subscribing = asyncio.create_task(
            proxy.post(
                request(4, "resources/subscribe", {"uri": "file:///a"}),
                session=session,
                subject="alice",
            )
        )
        asked = await proxy.scripted.server.read("resources/subscribe")
        proxy.scripted.server.write({"jsonrpc": "2.0", "id": asked["id"], "result": {}})
        assert (await subscribing).status == 200

        seen: list[tuple[str | None, str]] = []

        def allowed(identity: Identity, uri: str) -> bool:
            seen.append((identity.subject, uri))
            return False

        recheck = proxy.endpoints.rechecker()
        assert recheck(allowed) == 1
        assert seen == [("alice", "file:///a")]
        dropped = await proxy.scripted.server.read("resources/unsubscribe")
        assert dropped["params"] == {"uri": "file:///a"}
        assert recheck(allowed) == 0


async def test_ready_follows_the_server_connection() -> None:
    async with front() as proxy:
        assert proxy.endpoints.is_ready()
        proxy.scripted.serve_initialize = False
        await proxy.scripted.server.close()
        await eventually(lambda: len(proxy.scripted.channels) == 2, message="restarted")
        init = await proxy.scripted.server.read("initialize")
        assert not proxy.endpoints.is_ready()
        proxy.scripted.server.write({"jsonrpc": "2.0", "id": init["id"], "result": INIT_RESULT})
        await eventually(proxy.endpoints.is_ready, message="ready once initialised")


async def test_a_legacy_sse_request_is_owed_until_its_answer_is_on_the_stream() -> None:
    async with front() as proxy:
        stream = await proxy.client.get("/sse", headers={"Accept": "text/event-stream"})
        assert stream.status == 200
        first = await stream.content.readuntil(b"\n\n")
        endpoint = first.decode().split("data: ")[1].strip()
        assert proxy.endpoints.unanswered() == 0
        accepted = await proxy.client.post(
            endpoint, json=request(7, "tools/list", {}), headers=POST_HEADERS
        )
        assert accepted.status == 202
        assert proxy.endpoints.unanswered() == 1
        seen = await proxy.scripted.server.read()
        assert seen["method"] == "tools/list"
        assert proxy.endpoints.unanswered() == 1
        proxy.scripted.server.write({"jsonrpc": "2.0", "id": seen["id"], "result": {"tools": []}})
        event = await asyncio.wait_for(stream.content.readuntil(b"\n\n"), timeout=10)
        assert json.loads(event.decode().split("data: ")[1]) == {
            "jsonrpc": "2.0",
            "id": 7,
            "result": {"tools": []},
        }
        await eventually(lambda: proxy.endpoints.unanswered() == 0, message="answer delivered")
        stream.close()
