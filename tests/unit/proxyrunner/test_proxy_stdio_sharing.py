"""Two stdio-bridge replicas sharing one session store, each over its own scripted server, on
loopback with the real forwarder between them: a session is served by the replica holding it
whichever replica a request lands on, adopted (capabilities, log level, subscriptions) once that
replica is gone, its streams resumed from the store, and nothing is served from a store that
cannot be reached."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry
from testkit.commands import free_port
from testkit.mcprequests import INITIALIZE, POST_HEADERS
from testkit.stdiochannels import ScriptedServer
from testkit.subjects import subject_header
from testkit.waiting import eventually

from moorage_proxyrunner.backends.stdio.bridge import StdioBridge
from moorage_proxyrunner.backends.stdio.endpoints import BridgeEndpoints
from moorage_proxyrunner.backends.stdio.sharing import SessionSharing
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.front.app import make_app
from moorage_proxyrunner.front.metrics import ProxyMetrics
from moorage_proxyrunner.protocol.pipeline import Pipeline
from moorage_proxyrunner.protocol.requeststate import Bookkeeping, StateSeal
from moorage_proxyrunner.protocol.sse import EventParser
from moorage_proxyrunner.sessionstore.forwarding import Forwarder
from moorage_proxyrunner.sessionstore.memory import MemoryStore
from moorage_proxyrunner.sessionstore.records import SessionRecord
from moorage_proxyrunner.sessionstore.store import SessionStoreUnavailable

DOWN = "session storage unavailable: connection refused (test)"


class SharedMemory(MemoryStore):
    """One process's store standing in for Redis: the replicas of a test share it, and it can
    be taken down."""

    down = False

    @property
    def shared(self) -> bool:
        return True

    def _check(self) -> None:
        if self.down:
            raise SessionStoreUnavailable(DOWN)

    async def create(self, record: SessionRecord, *, idle_timeout: float) -> None:
        self._check()
        await super().create(record, idle_timeout=idle_timeout)

    async def load(self, session_id: str) -> SessionRecord | None:
        self._check()
        return await super().load(session_id)

    async def claim(self, session_id: str, *, expected_owner: str, owner: str) -> bool:
        self._check()
        return await super().claim(session_id, expected_owner=expected_owner, owner=owner)

    async def is_alive(self, address: str) -> bool:
        self._check()
        return await super().is_alive(address)

    async def append_event(self, session_id: str, stream: str, event_id: str, data: bytes) -> None:
        self._check()
        await super().append_event(session_id, stream, event_id, data)

    def kill(self, address: str) -> None:
        """The replica at `address` stops saying it is alive."""
        self._alive.pop(address, None)


@dataclass
class Replica:
    address: str
    endpoints: BridgeEndpoints
    scripted: ScriptedServer
    server: TestServer

    @property
    def url(self) -> str:
        return f"http://{self.address}/mcp"

    async def stop(self) -> None:
        await self.server.close()


@contextlib.asynccontextmanager
async def replicas(store: SharedMemory, count: int = 2) -> AsyncIterator[list[Replica]]:
    async with contextlib.AsyncExitStack() as stack:
        made = []
        for _ in range(count):
            port = free_port()
            address = f"127.0.0.1:{port}"
            scripted = ScriptedServer()
            bridge = StdioBridge(scripted.factory, backoff_initial=0.01, backoff_max=0.05)
            settings = ProxyRunnerSettings(
                port=port, keepalive_interval=0.1, advertise_address=address
            )
            forwarder = Forwarder()
            stack.push_async_callback(forwarder.close)
            endpoints = BridgeEndpoints(
                bridge,
                settings=settings,
                pipeline=Pipeline(),
                metrics=ProxyMetrics(CollectorRegistry()),
                store=store,
                address=address,
                forwarder=forwarder,
            )
            app = make_app(settings, endpoints=endpoints, registry=CollectorRegistry())
            app.middlewares.append(subject_header)
            server = TestServer(app, host="127.0.0.1", port=port)
            await server.start_server()
            stack.push_async_callback(server.close)
            await store.heartbeat(address, ttl=600)
            assert await bridge.wait_connected(10)
            made.append(Replica(address, endpoints, scripted, server))
        yield made


def call(request_id: Any, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}


async def post(
    http: aiohttp.ClientSession,
    replica: Replica,
    body: dict[str, Any],
    *,
    session: str | None = None,
    subject: str | None = None,
    accept: str | None = None,
) -> aiohttp.ClientResponse:
    headers = dict(POST_HEADERS)
    if session is not None:
        headers["Mcp-Session-Id"] = session
    if subject is not None:
        headers["X-Subject"] = subject
    if accept is not None:
        headers["Accept"] = accept
    return await http.post(replica.url, json=body, headers=headers)


async def open_session(
    http: aiohttp.ClientSession, replica: Replica, *, subject: str | None = None
) -> str:
    initialize = json.loads(json.dumps(INITIALIZE))
    initialize["params"]["capabilities"] = {"sampling": {}}
    resp = await post(http, replica, initialize, subject=subject)
    assert resp.status == 200, await resp.text()
    return resp.headers["Mcp-Session-Id"]


async def answer(replica: Replica, method: str, result: dict[str, Any]) -> dict[str, Any]:
    """The next `method` the replica's server reads, answered with `result`."""
    seen = await replica.scripted.server.read(method)
    replica.scripted.server.write({"jsonrpc": "2.0", "id": seen["id"], "result": result})
    return seen


async def events(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str | None, Any]]:
    """(id, message) of each SSE event of a response."""
    event_id = None
    async for raw in resp.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            yield event_id, json.loads(line[5:])
            event_id = None


async def test_a_request_landing_on_another_replica_is_served_by_the_one_holding_it() -> None:
    store = SharedMemory(max_sessions=100, resume_window=64)
    async with replicas(store) as (a, b), aiohttp.ClientSession() as http:
        session = await open_session(http, a)
        reply = asyncio.create_task(post(http, b, call(5, "tools/list"), session=session))
        await answer(a, "tools/list", {"tools": [{"name": "on-a"}]})
        resp = await reply
        assert resp.status == 200
        assert (await resp.json())["result"]["tools"] == [{"name": "on-a"}]
        assert b.scripted.server.to_server.empty()
        record = await store.load(session)
        assert record is not None
        assert record.owner == a.address


async def test_a_clients_answer_posted_to_another_replica_reaches_the_server_that_asked() -> None:
    store = SharedMemory(max_sessions=100, resume_window=64)
    async with replicas(store) as (a, b), aiohttp.ClientSession() as http:
        session = await open_session(http, a)
        tool = asyncio.create_task(
            post(http, a, call(7, "tools/call", {"name": "ask"}), session=session)
        )
        asked = await a.scripted.server.read("tools/call")
        a.scripted.server.write(
            {"jsonrpc": "2.0", "id": 900, "method": "sampling/createMessage", "params": {}}
        )
        stream = await tool
        received = events(stream)
        _, request = await anext(received)
        assert request["method"] == "sampling/createMessage"
        reply = {"jsonrpc": "2.0", "id": request["id"], "result": {"content": "hi"}}
        accepted = await post(http, b, reply, session=session)
        assert accepted.status == 202
        answered = await a.scripted.server.read()
        assert answered == {"jsonrpc": "2.0", "id": 900, "result": {"content": "hi"}}
        a.scripted.server.write({"jsonrpc": "2.0", "id": asked["id"], "result": {"done": True}})
        _, final = await anext(received)
        assert final["result"] == {"done": True}


async def test_a_session_whose_replica_is_gone_is_adopted_with_its_level_and_subscriptions() -> (
    None
):
    store = SharedMemory(max_sessions=100, resume_window=64)
    async with replicas(store) as (a, b), aiohttp.ClientSession() as http:
        session = await open_session(http, a)
        level = await post(
            http, a, call(1, "logging/setLevel", {"level": "debug"}), session=session
        )
        assert level.status == 200
        subscribe = asyncio.create_task(
            post(http, a, call(2, "resources/subscribe", {"uri": "r://x"}), session=session)
        )
        await answer(a, "resources/subscribe", {})
        assert (await subscribe).status == 200

        async def written() -> bool:
            record = await store.load(session)
            assert record is not None
            assert record.state.get("subscriptions") == ["r://x"]
            return bool(record.state.get("logLevel") == "debug")

        await eventually(written)
        await a.stop()
        store.kill(a.address)
        reply = asyncio.create_task(post(http, b, call(3, "tools/list"), session=session))
        seen = await answer(b, "resources/subscribe", {})
        assert seen["params"] == {"uri": "r://x"}
        assert (await answer(b, "logging/setLevel", {}))["params"] == {"level": "debug"}
        await answer(b, "tools/list", {"tools": []})
        resp = await reply
        assert resp.status == 200, await resp.text()
        record = await store.load(session)
        assert record is not None
        assert record.owner == b.address
        assert record.state["epoch"] == 1
        assert b.endpoints.metrics.sessions_adopted.labels("streamable-http")._value.get() == 1
        assert b.endpoints.sessions.get(session) is not None
        assert b.endpoints.sessions.get(session).peer.capabilities == {"sampling": {}}  # type: ignore[union-attr]


async def test_a_stream_of_a_replica_that_is_gone_resumes_from_the_store_on_another() -> None:
    store = SharedMemory(max_sessions=100, resume_window=64)
    async with replicas(store) as (a, b), aiohttp.ClientSession() as http:
        session = await open_session(http, a)
        params = {"name": "slow", "_meta": {"progressToken": "p"}}
        tool = asyncio.create_task(post(http, a, call("c1", "tools/call", params), session=session))
        asked = await a.scripted.server.read("tools/call")
        token = asked["params"]["_meta"]["progressToken"]
        for step in (1, 2):
            a.scripted.server.write(
                {
                    "jsonrpc": "2.0",
                    "method": "notifications/progress",
                    "params": {"progressToken": token, "progress": step},
                }
            )
        lost = await tool
        received = events(lost)
        first_id, first = await anext(received)
        assert first["params"]["progress"] == 1
        assert first_id is not None

        def kept() -> bool:
            return len(store._events.get(session, ())) == 2

        await eventually(kept)
        lost.close()
        await a.stop()
        store.kill(a.address)
        headers = {"Accept": "text/event-stream", "Mcp-Session-Id": session}
        resumed = await http.get(b.url, headers={**headers, "Last-Event-ID": first_id})
        assert resumed.status == 200, await resumed.text()
        replayed = [item async for item in events(resumed)]
        assert [m.get("params", {}).get("progress") for _, m in replayed[:1]] == [2]
        last_id, last = replayed[-1]
        assert last_id is None
        assert last["id"] == "c1"
        # Stopped gracefully, the replica ended the request itself (a killed one could not:
        # then the store's in-flight marker ends it, `test_proxy_stdio_sessionstate`).
        assert last["error"]["code"] == -32603
        # The session goes on here.
        reply = asyncio.create_task(post(http, b, call(9, "tools/list"), session=session))
        await answer(b, "tools/list", {"tools": []})
        assert (await reply).status == 200


async def test_a_legacy_sse_post_on_another_replica_reaches_its_stream_until_it_is_gone() -> None:
    store = SharedMemory(max_sessions=100, resume_window=64)
    async with replicas(store) as (a, b), aiohttp.ClientSession() as http:
        stream = await http.get(f"http://{a.address}/sse", headers={"Accept": "text/event-stream"})
        parser = EventParser()
        (opened,) = parser.feed(await stream.content.readuntil(b"\n\n"))
        endpoint = opened.data
        assert endpoint.startswith("/messages?session_id=")
        ping = await http.post(f"http://{b.address}{endpoint}", json=call(1, "ping"))
        assert ping.status == 202
        received = events(stream)
        _, pong = await anext(received)
        assert pong == {"jsonrpc": "2.0", "id": 1, "result": {}}
        session_id = endpoint.rpartition("=")[2]
        store.kill(a.address)
        gone = await http.post(f"http://{b.address}{endpoint}", json=call(2, "ping"))
        assert gone.status == 404
        assert await store.load(session_id) is not None
        stream.close()


async def test_another_subject_cannot_use_a_session_on_any_replica() -> None:
    store = SharedMemory(max_sessions=100, resume_window=64)
    async with replicas(store) as (a, b), aiohttp.ClientSession() as http:
        session = await open_session(http, a, subject="alice")
        for replica in (a, b):
            refused = await post(http, replica, call(1, "ping"), session=session, subject="bob")
            assert refused.status == 404
        store.kill(a.address)
        refused = await post(http, b, call(1, "ping"), session=session, subject="bob")
        assert refused.status == 404
        record = await store.load(session)
        assert record is not None
        assert record.owner == a.address
        mine = await post(http, b, call(2, "ping"), session=session, subject="alice")
        assert (await mine.json())["result"] == {}


async def test_without_the_store_new_and_foreign_sessions_get_503_and_held_ones_go_on() -> None:
    store = SharedMemory(max_sessions=100, resume_window=64)
    async with replicas(store) as (a, b), aiohttp.ClientSession() as http:
        session = await open_session(http, a)
        store.down = True
        refused = await post(http, a, INITIALIZE)
        assert refused.status == 503
        error = (await refused.json())["error"]
        assert error["code"] == -32000
        assert error["message"] == DOWN
        elsewhere = await post(http, b, call(1, "ping"), session=session)
        assert elsewhere.status == 503
        assert (await elsewhere.json())["error"]["message"] == DOWN
        held = await post(http, a, call(2, "ping"), session=session)
        assert (await held.json())["result"] == {}
        store.down = False
        assert await open_session(http, b)
        back = await post(http, b, call(3, "ping"), session=session)
        assert (await back.json())["result"] == {}


async def test_capabilities_too_large_for_a_record_are_left_out_of_it_not_refused() -> None:
    store = SharedMemory(max_sessions=100, resume_window=64)
    async with replicas(store, count=1) as (a,), aiohttp.ClientSession() as http:
        initialize = json.loads(json.dumps(INITIALIZE))
        initialize["params"]["capabilities"] = {"experimental": {"x": "y" * (64 * 1024 - 30)}}
        resp = await post(http, a, initialize)
        assert resp.status == 200, await resp.text()
        record = await store.load(resp.headers["Mcp-Session-Id"])
        assert record is not None
        assert "capabilities" not in record.state


async def test_requests_arriving_together_for_a_session_whose_owner_is_gone_adopt_it_once() -> None:
    store = SharedMemory(max_sessions=100, resume_window=64)
    async with replicas(store) as (a, b), aiohttp.ClientSession() as http:
        session = await open_session(http, a)
        await a.stop()
        store.kill(a.address)
        pings = [post(http, b, call(n, "ping"), session=session) for n in range(5)]
        answers = await asyncio.gather(*pings)
        assert [resp.status for resp in answers] == [200] * 5
        assert b.endpoints.metrics.sessions_adopted.labels("streamable-http")._value.get() == 1
        record = await store.load(session)
        assert record is not None
        assert record.state["epoch"] == 1


class ReleasingStore(SharedMemory):
    """The session's owner ends its handover (releases its sessions) between another
    replica's reading of the record and its claim."""

    releasing: str | None = None

    async def claim(self, session_id: str, *, expected_owner: str, owner: str) -> bool:
        if self.releasing is not None:
            await self.release(self.releasing)
            self.releasing = None
        return await super().claim(session_id, expected_owner=expected_owner, owner=owner)


async def test_a_session_released_while_another_replica_claims_it_is_still_adopted() -> None:
    store = ReleasingStore(max_sessions=100, resume_window=64)
    async with replicas(store) as (a, b), aiohttp.ClientSession() as http:
        session = await open_session(http, a)
        await a.stop()
        store.kill(a.address)
        store.releasing = a.address
        resp = await post(http, b, call(7, "ping"), session=session)
        assert resp.status == 200, await resp.text()
        record = await store.load(session)
        assert record is not None
        assert record.owner == b.address
        assert b.endpoints.metrics.sessions_adopted.labels("streamable-http")._value.get() == 1


def record_of(session_id: str, owner: str = "10.0.0.1:8080") -> SessionRecord:
    return SessionRecord(session_id, "streamable-http", owner, None, "2025-11-25", 0.0, {})


async def test_the_owner_keeps_the_records_of_sessions_it_serves_from_expiring() -> None:
    now = [0.0]
    store = SharedMemory(max_sessions=10, resume_window=8, clock=lambda: now[0])
    sharing = SessionSharing(store, address="10.0.0.1:8080", forwarder=None, idle_timeout=10)
    await sharing.create(record_of("kept"))
    await sharing.create(record_of("left"))
    for _ in range(3):
        now[0] += 8
        await sharing.touch(["kept"])
    assert await store.load("kept") is not None
    assert await store.load("left") is None


class SlowStore(SharedMemory):
    """Appends wait until released: a store that cannot keep up."""

    release = asyncio.Event()

    async def append_event(self, session_id: str, stream: str, event_id: str, data: bytes) -> None:
        await self.release.wait()
        await super().append_event(session_id, stream, event_id, data)


async def test_a_store_that_cannot_keep_up_makes_the_session_not_resumable_elsewhere() -> None:
    store = SlowStore(max_sessions=10, resume_window=64)
    sharing = SessionSharing(
        store, address="10.0.0.1:8080", forwarder=None, idle_timeout=60, writes_per_session=4
    )
    await sharing.create(record_of("s"))
    log = sharing.log_for("s", window=64, max_bytes=10_000, epoch=0)
    stream = log.open_stream(standalone=True)
    ids = [log.record(stream, b'{"n":1}') for _ in range(10)]
    store.release.set()

    async def flagged() -> bool:
        record = await store.load("s")
        return record is not None and record.state.get("resumable") is False

    await eventually(flagged)
    record = await store.load("s")
    assert record is not None
    assert await sharing.stored_stream(record, ids[0] or "") is None
    # What reached the store before the loss is there; nothing after it is.
    assert len(store._events.get("s", ())) < len(ids)


async def test_the_get_stream_of_a_replica_that_is_gone_resumes_on_another_and_goes_on() -> None:
    store = SharedMemory(max_sessions=100, resume_window=64)
    async with replicas(store) as (a, b), aiohttp.ClientSession() as http:
        session = await open_session(http, a)
        headers = {"Accept": "text/event-stream", "Mcp-Session-Id": session}
        stream = await http.get(a.url, headers=headers)
        changed = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
        received = events(stream)
        a.scripted.server.write(changed)
        first_id, _ = await anext(received)
        a.scripted.server.write({**changed, "method": "notifications/prompts/list_changed"})
        second_id, _ = await anext(received)

        def kept() -> bool:
            return len(store._events.get(session, ())) == 2

        await eventually(kept)
        stream.close()
        await a.stop()
        store.kill(a.address)
        assert first_id is not None
        resumed = await http.get(b.url, headers={**headers, "Last-Event-ID": first_id})
        assert resumed.status == 200, await resumed.text()
        replayed = events(resumed)
        again_id, again = await anext(replayed)
        assert again_id == second_id
        assert again["method"] == "notifications/prompts/list_changed"
        b.scripted.server.write(changed)
        live_id, live = await anext(replayed)
        assert live["method"] == "notifications/tools/list_changed"
        assert live_id not in (first_id, second_id)
        resumed.close()


async def test_a_replica_started_without_the_store_seals_with_the_shared_key_once_it_is_back() -> (
    None
):
    store = SharedMemory(max_sessions=10, resume_window=8)
    store.down = True
    original = store.shared_key

    async def shared_key(name: str) -> bytes:
        store._check()
        return await original(name)

    store.shared_key = shared_key  # type: ignore[method-assign]
    async with replicas(store, count=1) as (a,):
        # Another replica's state, sealed under the shared key: not opened with this
        # process's own key, opened once the store has given the shared one.
        shared = StateSeal(await original("request-state"))
        state = shared.seal(Bookkeeping(None, "parked@10.0.0.9:8080", None, 1e12))
        assert a.endpoints.bridge.parked_at(state, principal=None) is None
        store.down = False
        await a.endpoints._share_seal_key()
        assert a.endpoints.bridge.parked_at(state, principal=None) == "10.0.0.9:8080"


async def test_a_sessions_written_state_leaves_nothing_behind_once_it_is_in_the_store() -> None:
    store = SharedMemory(max_sessions=10, resume_window=8)
    sharing = SessionSharing(store, address="10.0.0.1:8080", forwarder=None, idle_timeout=60)
    await sharing.create(record_of("s"))
    sharing.update("s", {"logLevel": "info"})
    sharing.update("gone", {"logLevel": "info"})

    async def written() -> bool:
        record = await store.load("s")
        return record is not None and record.state.get("logLevel") == "info"

    await eventually(written)
    await eventually(lambda: not sharing._writes)
