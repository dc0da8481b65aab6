"""The stdio bridge over a dual-era server, which it runs in the 2026-07-28 era.

The scripted server answers the `server/discover` probe, so the bridge never initialises it:
modern clients get the server's input requests under the server's own keys with its
`requestState` sealed inside the proxy's; handshake-era clients are asked the same questions
as server requests, and their call is retried with the answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from testkit.stdiochannels import DISCOVER_RESULT, BridgeHarness
from testkit.waiting import eventually

from moorage_proxyrunner.backends.stdio.bridge import PROXY_CAPABILITIES
from moorage_proxyrunner.front.streams import Exchange, Mailbox
from moorage_proxyrunner.protocol import eras

MODERN = "2026-07-28"
SERVER_INFO = {"name": "scripted", "version": "1"}


class Harness(BridgeHarness):
    def __init__(self, park_ttl: float = 300.0, *, modern: bool = True) -> None:
        super().__init__(modern=modern, park_ttl=park_ttl, probe_era=True)

    def answer(self, request: dict[str, Any], result: dict[str, Any]) -> None:
        self.server.write({"jsonrpc": "2.0", "id": request["id"], "result": result})


async def started(harness: Harness) -> AsyncIterator[Harness]:
    await harness.bridge.start()
    assert await harness.bridge.wait_connected(10)
    yield harness
    await harness.bridge.stop()


@pytest_asyncio.fixture
async def harness() -> AsyncIterator[Harness]:
    async for h in started(Harness()):
        yield h


async def finished(exchange: Exchange) -> dict[str, Any]:
    await eventually(lambda: exchange.finished)
    assert exchange.final is not None
    return exchange.final


ASK_NAME = {
    "resultType": "input_required",
    "inputRequests": {
        "user_name": {"method": "elicitation/create", "params": {"message": "Your name?"}}
    },
    "requestState": "server-state-1",
}


async def test_a_server_that_answers_the_probe_runs_modern_and_handshake_clients_see_it(
    harness: Harness,
) -> None:
    assert harness.bridge.modern_backend
    assert harness.bridge.discover_result == DISCOVER_RESULT
    assert harness.bridge.initialize_result == {
        "protocolVersion": "2025-11-25",
        "capabilities": DISCOVER_RESULT["capabilities"],
        "serverInfo": SERVER_INFO,
    }
    listen = await harness.server.read("subscriptions/listen")
    assert listen["params"]["notifications"] == {"toolsListChanged": True}
    assert listen["params"]["_meta"][eras.CLIENT_CAPABILITIES_KEY] == PROXY_CAPABILITIES


async def test_a_server_that_refuses_the_probe_is_initialised_and_served_as_before() -> None:
    async for harness in started(Harness(modern=False)):
        assert not harness.bridge.modern_backend
        assert harness.bridge.initialize_result is not None
        legacy = harness.peer("legacy")
        call = await harness.send(legacy, 1, "tools/call", {"name": "echo"})
        sent = await harness.server.read("tools/call")
        assert "_meta" not in sent["params"]
        harness.answer(sent, {"content": []})
        assert await finished(call) == {"jsonrpc": "2.0", "id": 1, "result": {"content": []}}


async def test_a_handshake_request_carries_the_clients_envelope_and_its_sessions_level(
    harness: Harness,
) -> None:
    legacy = harness.peer("legacy", capabilities={"roots": {}})
    first = await harness.send(legacy, 1, "tools/call", {"name": "echo"})
    sent = await harness.server.read("tools/call")
    assert sent["params"]["_meta"] == {
        eras.PROTOCOL_VERSION_KEY: MODERN,
        eras.CLIENT_CAPABILITIES_KEY: {"roots": {}},
        eras.CLIENT_INFO_KEY: {"name": "moorage-proxyrunner", "version": "0.1.0"},
        eras.LOG_LEVEL_KEY: "debug",
    }
    harness.answer(
        sent,
        {
            "content": [],
            "resultType": "complete",
            "_meta": {eras.SERVER_INFO_KEY: SERVER_INFO},
        },
    )
    assert await finished(first) == {"jsonrpc": "2.0", "id": 1, "result": {"content": []}}
    harness.bridge.set_log_level(legacy, "error")
    await harness.send(legacy, 2, "tools/call", {"name": "echo"})
    sent = await harness.server.read()
    # No logging/setLevel in this era: the level travels with the request.
    assert sent["method"] == "tools/call"
    assert sent["params"]["_meta"][eras.LOG_LEVEL_KEY] == "error"


async def test_a_modern_client_gets_the_servers_keys_and_its_state_back_on_the_retry(
    harness: Harness,
) -> None:
    peer = harness.peer("m1", modern=True, capabilities={"elicitation": {}}, principal="alice")
    first = await harness.send(peer, 1, "tools/call", {"name": "greet"})
    harness.answer(await harness.server.read("tools/call"), dict(ASK_NAME))
    round_one = (await finished(first))["result"]
    assert round_one["inputRequests"] == ASK_NAME["inputRequests"]
    assert round_one["requestState"] != "server-state-1"
    answers = {"user_name": {"action": "accept", "content": {"name": "Ada"}}}
    retry_peer = harness.peer("m2", modern=True, principal="alice")
    params = {"name": "greet", "inputResponses": answers, "requestState": round_one["requestState"]}
    retry = await harness.send(retry_peer, 2, "tools/call", params)
    sent = await harness.server.read("tools/call")
    assert sent["params"]["requestState"] == "server-state-1"
    assert sent["params"]["inputResponses"] == answers
    harness.answer(sent, {"content": [{"type": "text", "text": "Hello, Ada"}]})
    assert (await finished(retry))["result"]["content"][0]["text"] == "Hello, Ada"


@pytest.mark.parametrize(
    ("mangle", "principal", "name", "message"),
    [
        (lambda s: s[:-2] + "AA", "alice", "greet", "altered"),
        (lambda s: "moorage.forged.AAAA", "alice", "greet", "altered"),
        (lambda s: s, "mallory", "greet", "another client"),
        (lambda s: s, "alice", "other-tool", "different request"),
        (lambda s: "server-state-1", "alice", "greet", "not issued by this proxy"),
    ],
    ids=["tampered", "forged", "foreign", "other-request", "unsealed"],
)
async def test_a_modern_retry_with_a_state_not_honoured_is_refused_and_not_forwarded(
    harness: Harness, mangle: Any, principal: str, name: str, message: str
) -> None:
    peer = harness.peer("m1", modern=True, capabilities={"elicitation": {}}, principal="alice")
    first = await harness.send(peer, 1, "tools/call", {"name": "greet"})
    harness.answer(await harness.server.read("tools/call"), dict(ASK_NAME))
    state = (await finished(first))["result"]["requestState"]
    retry_peer = harness.peer("m2", modern=True, principal=principal)
    retry = await harness.send(
        retry_peer, 2, "tools/call", {"name": name, "requestState": mangle(state)}
    )
    error = (await finished(retry))["error"]
    assert error["code"] == -32602
    assert message in error["message"]
    assert harness.server.to_server.empty()


async def test_an_expired_state_is_refused() -> None:
    async for harness in started(Harness(park_ttl=0.0)):
        peer = harness.peer("m1", modern=True, capabilities={"elicitation": {}})
        first = await harness.send(peer, 1, "tools/call", {"name": "greet"})
        harness.answer(await harness.server.read("tools/call"), dict(ASK_NAME))
        state = (await finished(first))["result"]["requestState"]
        retry = await harness.send(
            harness.peer("m2", modern=True),
            2,
            "tools/call",
            {"name": "greet", "requestState": state},
        )
        assert "expired" in (await finished(retry))["error"]["message"]


async def test_a_handshake_client_is_asked_as_a_handshake_server_would_and_the_call_retried(
    harness: Harness,
) -> None:
    legacy = harness.peer("legacy", capabilities={"elicitation": {}, "roots": {}})
    call = await harness.send(
        legacy, 7, "tools/call", {"name": "greet", "_meta": {"progressToken": "p"}}
    )
    sent = await harness.server.read("tools/call")
    harness.answer(
        sent,
        {
            "resultType": "input_required",
            "inputRequests": {
                "user_name": {"method": "elicitation/create", "params": {"message": "Name?"}},
                "client_roots": {"method": "roots/list"},
            },
            "requestState": "round-1",
        },
    )
    asked: list[dict[str, Any]] = []

    def collect(count: int) -> bool:
        asked.extend(call.take())
        return len(asked) == count

    await eventually(lambda: collect(2))
    assert [(a["method"], a["params"]) for a in asked] == [
        ("elicitation/create", {"message": "Name?"}),
        ("roots/list", {}),
    ]
    assert all(isinstance(a["id"], str) for a in asked)
    await harness.bridge.respond(
        legacy, {"jsonrpc": "2.0", "id": asked[1]["id"], "result": {"roots": []}}
    )
    await harness.bridge.respond(
        legacy, {"jsonrpc": "2.0", "id": asked[0]["id"], "result": {"action": "decline"}}
    )
    retried = await harness.server.read("tools/call")
    assert retried["id"] != sent["id"]
    assert retried["params"]["name"] == "greet"
    assert retried["params"]["requestState"] == "round-1"
    assert retried["params"]["inputResponses"] == {
        "user_name": {"action": "decline"},
        "client_roots": {"roots": []},
    }
    # Progress of the retried call still reaches the client under its own token.
    harness.server.write(
        {
            "jsonrpc": "2.0",
            "method": "notifications/progress",
            "params": {"progressToken": retried["params"]["_meta"]["progressToken"], "progress": 1},
        }
    )
    await eventually(lambda: collect(3))
    assert asked[2]["params"] == {"progressToken": "p", "progress": 1}
    harness.answer(retried, {"content": [], "resultType": "complete"})
    assert await finished(call) == {"jsonrpc": "2.0", "id": 7, "result": {"content": []}}


@pytest.mark.parametrize(
    ("capabilities", "input_requests", "code"),
    [
        ({"elicitation": {}}, {"k": {"method": "tools/call", "params": {}}}, -32603),
        ({}, {"k": {"method": "sampling/createMessage", "params": {}}}, -32021),
    ],
    ids=["unknown-input-method", "missing-capability"],
)
async def test_input_a_handshake_client_cannot_be_asked_fails_the_call(
    harness: Harness, capabilities: dict[str, Any], input_requests: dict[str, Any], code: int
) -> None:
    legacy = harness.peer("legacy", capabilities=capabilities)
    call = await harness.send(legacy, 1, "tools/call", {"name": "greet"})
    harness.answer(
        await harness.server.read("tools/call"),
        {"resultType": "input_required", "inputRequests": input_requests},
    )
    assert (await finished(call))["error"]["code"] == code


async def test_a_handshake_clients_refusal_fails_the_call_and_a_stray_answer_is_dropped(
    harness: Harness,
) -> None:
    legacy = harness.peer("legacy", capabilities={"elicitation": {}})
    other = harness.peer("other", capabilities={"elicitation": {}})
    call = await harness.send(legacy, 1, "tools/call", {"name": "greet"})
    harness.answer(await harness.server.read("tools/call"), dict(ASK_NAME))
    await eventually(lambda: call.pending == 1)
    asked = call.take()[0]
    # Another session cannot answer for this one.
    await harness.bridge.respond(other, {"jsonrpc": "2.0", "id": asked["id"], "result": {}})
    assert not call.finished
    await harness.bridge.respond(
        legacy,
        {"jsonrpc": "2.0", "id": asked["id"], "error": {"code": -1, "message": "no"}},
    )
    assert (await finished(call))["error"] == {"code": -1, "message": "no"}


async def test_subscriptions_go_through_the_proxys_listen_stream(harness: Harness) -> None:
    first_listen = await harness.server.read("subscriptions/listen")
    legacy = harness.peer("legacy", mailbox=Mailbox())
    assert harness.bridge.hold(legacy, "file:///a")
    cancelled = await harness.server.read("notifications/cancelled")
    assert cancelled["params"]["requestId"] == first_listen["id"]
    listen = await harness.server.read("subscriptions/listen")
    assert listen["params"]["notifications"] == {
        "toolsListChanged": True,
        "resourceSubscriptions": ["file:///a"],
    }
    harness.server.write(
        {
            "jsonrpc": "2.0",
            "method": "notifications/subscriptions/acknowledged",
            "params": {"_meta": {eras.SUBSCRIPTION_ID_KEY: listen["id"]}},
        }
    )
    harness.server.write(
        {
            "jsonrpc": "2.0",
            "method": "notifications/resources/updated",
            "params": {"uri": "file:///a", "_meta": {eras.SUBSCRIPTION_ID_KEY: listen["id"]}},
        }
    )
    assert legacy.mailbox is not None
    await eventually(lambda: legacy.mailbox is not None and legacy.mailbox.pending == 1)
    assert legacy.mailbox.take() == [
        {
            "jsonrpc": "2.0",
            "method": "notifications/resources/updated",
            "params": {"uri": "file:///a"},
        }
    ]
    assert harness.bridge.release(legacy, "file:///a")
    await harness.server.read("notifications/cancelled")
    assert (await harness.server.read("subscriptions/listen"))["params"]["notifications"] == {
        "toolsListChanged": True
    }
