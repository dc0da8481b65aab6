"""Killing a replica mid-session loses no session: SDK clients of both eras go on while each of
the three replicas is killed in turn (SIGKILL, no handover; HAProxy sends the next request to
another), and a stream resumes with `Last-Event-ID` on another replica, its events complete:
none lost, none repeated. Raw HTTP where the test must see event ids."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
from e2e.proxy.proxykit import initialize_request, next_sse_events
from e2e.scaleout.scaleoutkit import (
    KEY_PREFIX,
    STDIO_TOOLBOX,
    ScaledOut,
    greet,
    scaled_out,
    spread,
    text_of,
)
from mcp import Client
from testkit.waiting import eventually

from moorage_proxyrunner.protocol.sse import Event, EventParser

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(280)]

SSE_FIRST = {"Content-Type": "application/json", "Accept": "text/event-stream, application/json"}
ASK = {
    "jsonrpc": "2.0",
    "id": 7,
    "method": "tools/call",
    "params": {"name": "ask_name", "arguments": {}},
}


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_session_goes_on_while_each_replica_is_killed_in_turn(
    tmp_path: Path, mode: str
) -> None:
    async with (
        scaled_out(tmp_path, STDIO_TOOLBOX) as cluster,
        Client(cluster.mcp, mode=mode, elicitation_callback=greet) as client,
    ):
        assert text_of(await client.call_tool("echo", {"text": "first"})) == "first"
        for index in range(3):
            # No waiting for HAProxy's health check: the next request may be sent to the dead
            # replica, whose refused connection HAProxy retries on another.
            cluster.replicas[index].kill()
            async with asyncio.timeout(60):
                for round_ in range(3):
                    text = f"killed {index}, round {round_}"
                    assert text_of(await client.call_tool("echo", {"text": text})) == text
                assert text_of(await client.call_tool("ask_name", {})) == "Hello, Ada!"
            await cluster.restart(index)
        cluster.assert_alive()


async def open_session(
    cluster: ScaledOut, http: aiohttp.ClientSession
) -> tuple[dict[str, str], int]:
    """A raw session through HAProxy that asks for SSE answers; its headers and the index of
    the replica that answered its `initialize` (the session's owner)."""
    init = initialize_request()
    init["params"]["capabilities"] = {"elicitation": {}}
    before = await cluster.served()
    async with http.post(cluster.mcp, json=init, headers=SSE_FIRST) as resp:
        assert resp.status == 200
        headers = {**SSE_FIRST, "Mcp-Session-Id": resp.headers["Mcp-Session-Id"]}
        await resp.read()
    served = spread(before, await cluster.served())
    owner = served.index(max(served))
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    async with http.post(cluster.mcp, json=note, headers=headers) as resp:
        assert resp.status == 202
    return headers, owner


async def read_until_answer(resp: aiohttp.ClientResponse, request_id: int) -> list[Event]:
    """The events of a stream up to the answer to `request_id`; the stream then ends."""
    parser = EventParser()
    events: list[Event] = []
    while not any(json.loads(e.data).get("id") == request_id for e in events):
        events += await next_sse_events(resp, parser)
    assert await resp.content.read() == b"", "the stream ends with the answer"
    return events


async def ask_and_drop(
    cluster: ScaledOut, http: aiohttp.ClientSession, headers: dict[str, str]
) -> tuple[Event, dict[str, Any]]:
    """Call `ask_name`, read the elicitation it sends on the call's stream, and lose the stream
    while the call waits on the client: the event read and the question."""
    resp = await http.post(cluster.mcp, json=ASK, headers=headers)
    assert resp.content_type == "text/event-stream"
    [asked] = await next_sse_events(resp, EventParser())
    question = json.loads(asked.data)
    assert question["method"] == "elicitation/create"
    assert asked.id is not None
    resp.close()
    return asked, question


def event_kept(cluster: ScaledOut, session_id: str, event_id: str) -> bool:
    """Whether Redis holds the session's event `event_id` (the `ev:` stream of the session's
    hashed id; docs/architecture.md, "Redis keys and times")."""
    key = f"{KEY_PREFIX}ev:{hashlib.sha256(session_id.encode()).hexdigest()}"
    with redis.Redis(host="127.0.0.1", port=cluster.redis.port) as client:
        entries = client.xrange(key)
    return any(fields.get(b"i") == event_id.encode() for _, fields in entries)


def answer_to(question: dict[str, Any]) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": question["id"],
        "result": {"action": "accept", "content": {"name": "Ada"}},
    }


async def test_a_lost_stream_resumes_on_another_replica_with_nothing_lost_or_repeated(
    tmp_path: Path,
) -> None:
    async with scaled_out(tmp_path, STDIO_TOOLBOX) as cluster, aiohttp.ClientSession() as http:
        headers, _ = await open_session(cluster, http)
        # Round-robin: the call, the client's answer and the resuming GET land on three
        # different replicas.
        asked, question = await ask_and_drop(cluster, http, headers)
        async with http.post(cluster.mcp, json=answer_to(question), headers=headers) as posted:
            assert posted.status == 202
        resume = {**headers, "Accept": "text/event-stream", "Last-Event-ID": asked.id}
        async with http.get(cluster.mcp, headers=resume) as resumed:
            assert resumed.status == 200
            events = await read_until_answer(resumed, 7)
        final = json.loads(events[-1].data)
        assert final["result"]["content"][0]["text"] == "Hello, Ada!"
        ids = [e.id for e in events if e.id is not None]
        assert asked.id not in ids, "nothing the client read comes again"
        assert len(ids) == len(set(ids)), "no event twice"
        assert [json.loads(e.data).get("id") for e in events].count(7) == 1
        cluster.assert_alive()


async def test_after_its_owner_is_killed_a_stream_resumes_elsewhere_and_the_session_goes_on(
    tmp_path: Path,
) -> None:
    async with scaled_out(tmp_path, STDIO_TOOLBOX) as cluster, aiohttp.ClientSession() as http:
        headers, owner = await open_session(cluster, http)
        asked, question = await ask_and_drop(cluster, http, headers)
        # The owner writes a stream's events to Redis moments after sending them
        # (docs/architecture.md, "Events across replicas"); a crash within those moments makes
        # the event unresumable by design, which is not what this test is about.
        session_id = headers["Mcp-Session-Id"]
        await eventually(
            lambda: event_kept(cluster, session_id, asked.id or ""), message="event in Redis"
        )
        cluster.replicas[owner].kill()
        # The call was in flight on the killed replica: resuming its stream elsewhere either
        # completes it (if the question can still be answered) or ends it with an error for
        # that request saying it may be retried. It never hangs, never repeats an event.
        async with http.post(cluster.mcp, json=answer_to(question), headers=headers) as posted:
            assert posted.status in (202, 404, 503), await posted.text()
        resume = {**headers, "Accept": "text/event-stream", "Last-Event-ID": asked.id}
        async with http.get(cluster.mcp, headers=resume) as resumed:
            assert resumed.status == 200, await resumed.text()
            events = await read_until_answer(resumed, 7)
        ids = [e.id for e in events if e.id is not None]
        assert asked.id not in ids
        assert len(ids) == len(set(ids))
        final = json.loads(events[-1].data)
        if "error" in final:
            assert "retr" in final["error"]["message"].lower(), final
        else:
            assert final["result"]["content"][0]["text"] == "Hello, Ada!"
        # The session itself goes on, on the replicas left.
        echo = {
            "jsonrpc": "2.0",
            "id": 8,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "still here"}},
        }
        for _ in range(2):
            async with http.post(cluster.mcp, json=echo, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                [answer] = [json.loads(e.data) for e in await read_until_answer(resp, 8)][-1:]
            assert answer["result"]["content"][0]["text"] == "still here"
        cluster.replicas[owner].start()
        await cluster.all_up()
        cluster.assert_alive()
