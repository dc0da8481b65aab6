"""The stdio bridge's sessions across replicas: three `moorage-proxyrunner run --local` processes,
each over its own toolbox server process (stdio), sharing a real Redis (`sessionStorage.type:
redis`). Every request of one session is sent to another replica by URL, with raw HTTP and with
the `mcp` SDK client:

- a legacy streamable-HTTP session goes on whichever replica a request lands on;
- an elicitation the owner's server asks is answered by a POST landing on another replica;
- with the owner killed, `Last-Event-ID` on another replica replays from Redis, ends the request
  that died with it with an error saying it may be retried, and the session goes on there;
- a 2026-07-28 client's `input_required` retry landing on another replica resumes the call;
- legacy HTTP+SSE POSTs on other replicas reach the stream; a new stream once its owner is gone;
- with Redis stopped a new session gets 503 and a clear error while held sessions go on; with
  Redis back everything works again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from proxykit import TOOLBOX, call, initialize_request
from redis.asyncio import Redis
from testkit.issuer import LocalIssuer, serving_issuer
from testkit.mcprequests import POST_HEADERS
from testkit.redisserver import RedisServer, running_redis
from testkit.replicas import Replica, is_healthy, running_replicas
from testkit.waiting import eventually

from moorage_proxyrunner.protocol.sse import EventParser
from moorage_proxyrunner.sessionstore.redisstore import session_hash

pytestmark = pytest.mark.e2e

MODERN = "2026-07-28"


def mcp(replica: Replica) -> str:
    return f"{replica.base}/mcp"


def runconfig(redis: RedisServer, issuer: LocalIssuer | None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "schema_version": "moorage/v1",
        "session_storage": {
            "type": "redis",
            "redis": {"address": redis.address, "key_prefix": "moorage:e2e:stdio:"},
        },
    }
    if issuer is not None:
        config["oidc"] = {"type": "oidc", "issuer": issuer.url, "audience": issuer.audience}
    return config


@contextlib.asynccontextmanager
async def cluster(
    tmp_path: Path, issuer: LocalIssuer | None = None
) -> AsyncIterator[tuple[RedisServer, list[Replica]]]:
    backend = ("--", *TOOLBOX, "stdio")
    with (
        running_redis(tmp_path) as redis,
        running_replicas(tmp_path, runconfig(redis, issuer), backend, count=3) as replicas,
    ):
        for replica in replicas:
            await eventually(
                lambda base=replica.base: is_healthy(base), message=replica.base, timeout=90
            )
        yield redis, replicas
        for replica in replicas:
            killed = replica.process is not None and replica.process.returncode == -signal.SIGKILL
            assert killed or replica.alive, replica.log.read_text()[-4000:]


async def post(
    http: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    *,
    session: str | None = None,
    headers: dict[str, str] | None = None,
) -> aiohttp.ClientResponse:
    sent = {**POST_HEADERS, **(headers or {})}
    if session is not None:
        sent["Mcp-Session-Id"] = session
    return await http.post(url, json=body, headers=sent)


async def legacy_session(
    http: aiohttp.ClientSession, replica: Replica, headers: dict[str, str] | None = None
) -> str:
    request = initialize_request()
    request["params"]["capabilities"] = {"elicitation": {}}
    resp = await post(http, mcp(replica), request, headers=headers)
    assert resp.status == 200, await resp.text()
    return resp.headers["Mcp-Session-Id"]


async def answer_of(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    """The JSON-RPC answer of a POST, plain JSON or the last event of its SSE stream."""
    assert resp.status == 200, await resp.text()
    if resp.content_type == "application/json":
        body: dict[str, Any] = await resp.json()
        return body
    messages = [m async for _, m in sse_messages(resp)]
    return messages[-1]


async def sse_messages(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str | None, Any]]:
    parser = EventParser()
    while True:
        chunk = await asyncio.wait_for(resp.content.readany(), timeout=20)
        if not chunk:
            return
        for event in parser.feed(chunk):
            yield event.id, json.loads(event.data)


def text_of(answer: dict[str, Any]) -> str:
    assert "result" in answer, answer
    content = answer["result"]["content"]
    return "".join(part.get("text", "") for part in content)


async def test_a_legacy_session_goes_on_whichever_replica_a_request_lands_on(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as (_, replicas), aiohttp.ClientSession() as http:
        session = await legacy_session(http, replicas[0])
        for index, replica in enumerate([*replicas, *replicas]):
            resp = await post(
                http, mcp(replica), call("echo", {"text": f"hop {index}"}, index), session=session
            )
            assert text_of(await answer_of(resp)) == f"hop {index}"
        # An SDK client on one replica meanwhile, its requests all on that one.
        async with Client(streamable_http_client(mcp(replicas[1]))) as client:
            result = await client.call_tool("echo", {"text": "sdk"})
            assert [c.text for c in result.content] == ["sdk"]  # type: ignore[union-attr]
            again = await post(
                http, mcp(replicas[2]), call("echo", {"text": "raw"}), session=session
            )
            assert text_of(await answer_of(again)) == "raw"
        bye = await http.delete(mcp(replicas[2]), headers={"Mcp-Session-Id": session})
        assert bye.status == 200
        gone = await post(http, mcp(replicas[1]), call("echo", {"text": "x"}), session=session)
        assert gone.status == 404


async def test_an_elicitation_is_answered_through_another_replica(tmp_path: Path) -> None:
    async with cluster(tmp_path) as (_, replicas), aiohttp.ClientSession() as http:
        session = await legacy_session(http, replicas[0])
        stream = await post(http, mcp(replicas[0]), call("ask_name", {}, 11), session=session)
        assert stream.content_type == "text/event-stream"
        messages = sse_messages(stream)
        _, asked = await anext(messages)
        assert asked["method"] == "elicitation/create"
        reply = {
            "jsonrpc": "2.0",
            "id": asked["id"],
            "result": {"action": "accept", "content": {"name": "Ada"}},
        }
        accepted = await post(http, mcp(replicas[1]), reply, session=session)
        assert accepted.status == 202, await accepted.text()
        _, final = await anext(messages)
        assert final["id"] == 11
        assert text_of(final) == "Hello, Ada!"


async def test_with_its_owner_killed_a_session_resumes_from_redis_on_another_replica(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as (redis, replicas), aiohttp.ClientSession() as http:
        owner, other, third = replicas
        session = await legacy_session(http, owner)
        stream = await post(http, mcp(owner), call("ask_name", {}, "q1"), session=session)
        event_id, asked = await anext(sse_messages(stream))
        assert asked["method"] == "elicitation/create"
        assert event_id is not None
        # Events reach Redis in the background, moments after the client: the owner is killed
        # once this one is there.
        async with Redis.from_url(f"redis://{redis.address}") as client:
            events_key = f"moorage:e2e:stdio:ev:{session_hash(session)}"
            await eventually(lambda: client.xlen(events_key), timeout=10)
        owner.kill()
        stream.close()
        headers = {"Accept": "text/event-stream", "Mcp-Session-Id": session}

        async def resumed() -> aiohttp.ClientResponse | None:
            resp = await http.get(mcp(other), headers={**headers, "Last-Event-ID": event_id})
            if resp.status == 200:
                return resp
            # Until the killed owner's heartbeat expires the request is forwarded to it, and
            # nothing answers there: 502 or a connection refused taken for gone.
            assert resp.status in (502, 503), await resp.text()
            return None

        resp = await eventually(resumed, timeout=20)
        replayed = [m async for _, m in sse_messages(resp)]
        assert len(replayed) == 1
        ended = replayed[0]
        assert ended["id"] == "q1"
        assert ended["error"]["code"] == -32603
        assert "may be retried" in ended["error"]["message"]
        for replica in (other, third, other):
            again = await post(http, mcp(replica), call("echo", {"text": "on"}), session=session)
            assert text_of(await answer_of(again)) == "on"


async def test_a_modern_retry_landing_on_another_replica_resumes_the_parked_call(
    tmp_path: Path,
) -> None:
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
    }
    headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "ask_name"}
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "ask_name", "arguments": {}, "_meta": meta},
    }
    async with cluster(tmp_path) as (_, replicas), aiohttp.ClientSession() as http:
        first = await answer_of(await post(http, mcp(replicas[0]), body, headers=headers))
        result = first["result"]
        assert result["resultType"] == "input_required"
        (key,) = result["inputRequests"]
        retry = json.loads(json.dumps(body))
        retry["id"] = 2
        retry["params"]["requestState"] = result["requestState"]
        retry["params"]["inputResponses"] = {key: {"action": "accept", "content": {"name": "Bo"}}}
        done = await answer_of(await post(http, mcp(replicas[1]), retry, headers=headers))
        assert done["id"] == 2
        assert text_of(done) == "Hello, Bo!"


async def test_legacy_sse_posts_on_other_replicas_reach_the_stream(tmp_path: Path) -> None:
    async with cluster(tmp_path) as (_, replicas), aiohttp.ClientSession() as http:
        stream = await http.get(f"{replicas[0].base}/sse", headers={"Accept": "text/event-stream"})
        parser = EventParser()
        endpoint = ""
        while not endpoint:
            for event in parser.feed(await asyncio.wait_for(stream.content.readany(), 20)):
                if event.event == "endpoint":
                    endpoint = event.data
        posted = await http.post(
            f"{replicas[1].base}{endpoint}", json=initialize_request(1), headers=POST_HEADERS
        )
        assert posted.status == 202, await posted.text()
        for index, replica in enumerate(replicas[1:] * 2, start=2):
            sent = await http.post(
                f"{replica.base}{endpoint}",
                json=call("echo", {"text": f"sse {index}"}, index),
                headers=POST_HEADERS,
            )
            assert sent.status == 202, await sent.text()
        seen: dict[Any, Any] = {}
        while len(seen) < 5:
            for event in parser.feed(await asyncio.wait_for(stream.content.readany(), 20)):
                message = json.loads(event.data)
                seen[message.get("id")] = message
        assert seen[1]["result"]["serverInfo"]["name"] == "moorage-toolbox"
        assert [text_of(seen[i]) for i in range(2, 6)] == [f"sse {i}" for i in range(2, 6)]
        replicas[0].kill()
        stream.close()

        async def gone() -> bool:
            sent = await http.post(
                f"{replicas[1].base}{endpoint}",
                json=call("echo", {"text": "x"}),
                headers=POST_HEADERS,
            )
            return sent.status == 404

        await eventually(gone, timeout=20)


async def test_without_redis_new_sessions_get_503_held_ones_go_on_and_all_comes_back(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as (redis, replicas), aiohttp.ClientSession() as http:
        held = await legacy_session(http, replicas[0])
        redis.stop()
        refused = await post(http, mcp(replicas[0]), initialize_request())
        assert refused.status == 503
        error = (await refused.json())["error"]
        assert error["code"] == -32000
        assert "session storage" in error["message"]
        assert "unavailable" in error["message"]
        elsewhere = await post(http, mcp(replicas[1]), call("echo", {"text": "x"}), session=held)
        assert elsewhere.status == 503
        local = await post(http, mcp(replicas[0]), call("echo", {"text": "still"}), session=held)
        assert text_of(await answer_of(local)) == "still"
        redis.start()

        async def back(replica: Replica) -> bool:
            resp = await post(http, mcp(replica), initialize_request())
            return resp.status == 200

        for replica in replicas:
            await eventually(lambda replica=replica: back(replica), timeout=30)
        fresh = await legacy_session(http, replicas[1])
        for replica in replicas:
            resp = await post(http, mcp(replica), call("echo", {"text": "back"}), session=fresh)
            assert text_of(await answer_of(resp)) == "back"


async def test_only_the_subject_that_opened_a_session_uses_it_on_any_replica(
    tmp_path: Path,
) -> None:
    async with serving_issuer() as issuer:
        alice = {"Authorization": f"Bearer {issuer.token(sub='alice')}"}
        bob = {"Authorization": f"Bearer {issuer.token(sub='bob')}"}
        async with cluster(tmp_path, issuer) as (_, replicas), aiohttp.ClientSession() as http:
            session = await legacy_session(http, replicas[0], alice)

            async def echo(replica: Replica, headers: dict[str, str]) -> aiohttp.ClientResponse:
                body = call("echo", {"text": "mine"})
                return await post(http, mcp(replica), body, session=session, headers=headers)

            for replica in replicas:
                assert (await echo(replica, bob)).status == 404
                assert text_of(await answer_of(await echo(replica, alice))) == "mine"
            replicas[0].kill()
            assert (await echo(replicas[1], bob)).status == 404

            async def adopted() -> bool:
                resp = await echo(replicas[2], alice)
                return resp.status == 200 and text_of(await answer_of(resp)) == "mine"

            await eventually(adopted, timeout=20)
            assert (await echo(replicas[1], bob)).status == 404
