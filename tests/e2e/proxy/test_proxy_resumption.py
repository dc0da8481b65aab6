"""A client that loses an SSE stream resumes it with Last-Event-ID, on the stdio backend.

Raw HTTP against the proxy in front of the toolbox server over stdio: the client ranks SSE
first, so each answer is a stream whose events carry ids. It drops the stream of a call that is
waiting on the client's own answer (an elicitation), answers, and resumes with the id of the
last event it read: the rest of that stream, up to the response, comes on the GET.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from proxykit import initialize_request, next_sse_events, running_proxy, stdio_backend

from moorage_proxyrunner.config.limits import Limits
from moorage_proxyrunner.protocol.sse import Event, EventParser

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SSE_FIRST = {"Content-Type": "application/json", "Accept": "text/event-stream, application/json"}


async def open_session(http: aiohttp.ClientSession, url: str) -> dict[str, str]:
    init = initialize_request()
    init["params"]["capabilities"] = {"elicitation": {}}
    async with http.post(url, json=init, headers=SSE_FIRST) as resp:
        assert resp.status == 200
        headers = {**SSE_FIRST, "Mcp-Session-Id": resp.headers["Mcp-Session-Id"]}
        await resp.read()
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    async with http.post(url, json=note, headers=headers) as resp:
        assert resp.status == 202
    return headers


async def test_a_lost_stream_is_resumed_up_to_its_response() -> None:
    call: dict[str, Any] = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "ask_name", "arguments": {}},
    }
    async with running_proxy(stdio_backend()) as proxy, aiohttp.ClientSession() as http:
        headers = await open_session(http, proxy.mcp)
        resp = await http.post(proxy.mcp, json=call, headers=headers)
        assert resp.content_type == "text/event-stream"
        [asked] = await next_sse_events(resp, EventParser())
        question = json.loads(asked.data)
        assert question["method"] == "elicitation/create"
        assert asked.id is not None
        resp.close()  # the stream is lost while the call waits on the client
        answer = {
            "jsonrpc": "2.0",
            "id": question["id"],
            "result": {"action": "accept", "content": {"name": "Ada"}},
        }
        async with http.post(proxy.mcp, json=answer, headers=headers) as posted:
            assert posted.status == 202
        resume = {**headers, "Accept": "text/event-stream", "Last-Event-ID": asked.id}
        async with http.get(proxy.mcp, headers=resume) as resumed:
            assert resumed.status == 200
            parser = EventParser()
            events: list[Event] = []
            while not any(json.loads(e.data).get("id") == 7 for e in events):
                events += await next_sse_events(resumed, parser)
            assert await resumed.content.read() == b"", "the resumed stream ends"
    final = json.loads(events[-1].data)
    assert final["result"]["content"][0]["text"] == "Hello, Ada!"
    # Nothing before the last event the client read comes again; the response, which ends the
    # stream, is the one event without an id.
    assert asked.id not in [e.id for e in events]
    assert events[-1].id is None


async def test_an_id_outside_the_window_is_refused_and_ids_are_off_at_window_zero() -> None:
    async with (
        running_proxy(stdio_backend(), limits=Limits(resume_window=0)) as proxy,
        aiohttp.ClientSession() as http,
    ):
        headers = await open_session(http, proxy.mcp)
        echo = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "hi"}},
        }
        async with http.post(proxy.mcp, json=echo, headers=headers) as resp:
            [event] = EventParser().feed(await resp.read())
        assert event.id is None
    async with running_proxy(stdio_backend()) as proxy, aiohttp.ClientSession() as http:
        headers = await open_session(http, proxy.mcp)
        resume = {**headers, "Accept": "text/event-stream", "Last-Event-ID": "1-999"}
        async with http.get(proxy.mcp, headers=resume) as resp:
            assert resp.status == 400
