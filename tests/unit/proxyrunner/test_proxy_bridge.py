"""The stdio bridge's multiplexing, against a scripted server on an in-memory channel.

The end-to-end suite runs the bridge against real MCP servers; here each rule is pinned down
with the server's side of the wire written out, including what real servers rarely do on cue
(two clients in flight when the server asks something, a process dying mid-call).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from testkit.stdiochannels import BridgeHarness
from testkit.waiting import eventually

from moorage_proxyrunner.backends.stdio.bridge import StdioBridge
from moorage_proxyrunner.backends.stdio.channels import StdioChannel
from moorage_proxyrunner.backends.stdio.peers import Peer
from moorage_proxyrunner.front.streams import Exchange, Mailbox


class Harness(BridgeHarness):
    def __init__(self) -> None:
        super().__init__(coalesce=0.01)


@pytest_asyncio.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    await h.bridge.start()
    assert await h.bridge.wait_connected(10)
    yield h
    await h.bridge.stop()


async def finished(exchange: Exchange) -> dict[str, Any]:
    await eventually(lambda: exchange.finished)
    assert exchange.final is not None
    return exchange.final


async def test_colliding_client_ids_get_their_own_answers(harness: Harness) -> None:
    alice, bob = harness.peer("alice"), harness.peer("bob")
    first = await harness.send(alice, 1, "tools/call", {"name": "echo"})
    second = await harness.send(bob, 1, "tools/call", {"name": "echo"})
    seen = [await harness.server.read("tools/call"), await harness.server.read("tools/call")]
    assert seen[0]["id"] != seen[1]["id"]
    # Answer in reverse order: each answer still reaches its own client, under its own id.
    harness.server.write({"jsonrpc": "2.0", "id": seen[1]["id"], "result": {"who": "bob"}})
    harness.server.write({"jsonrpc": "2.0", "id": seen[0]["id"], "result": {"who": "alice"}})
    assert await finished(first) == {"jsonrpc": "2.0", "id": 1, "result": {"who": "alice"}}
    assert await finished(second) == {"jsonrpc": "2.0", "id": 1, "result": {"who": "bob"}}


async def test_progress_goes_only_to_the_request_that_asked(harness: Harness) -> None:
    alice, bob = harness.peer("alice"), harness.peer("bob")
    asked = await harness.send(
        alice, 5, "tools/call", {"name": "count", "_meta": {"progressToken": "mine"}}
    )
    other = await harness.send(bob, 5, "tools/call", {"name": "count"})
    forwarded = await harness.server.read("tools/call")
    await harness.server.read("tools/call")
    token = forwarded["params"]["_meta"]["progressToken"]
    assert token != "mine"
    harness.server.write(
        {
            "jsonrpc": "2.0",
            "method": "notifications/progress",
            "params": {"progressToken": token, "progress": 1},
        }
    )
    await eventually(lambda: asked.pending == 1)
    assert asked.take() == [
        {
            "jsonrpc": "2.0",
            "method": "notifications/progress",
            "params": {"progressToken": "mine", "progress": 1},
        }
    ]
    assert other.pending == 0


async def test_a_client_cancellation_names_the_backend_id(harness: Harness) -> None:
    alice = harness.peer("alice")
    exchange = await harness.send(alice, "abc", "tools/call", {"name": "wait"})
    forwarded = await harness.server.read("tools/call")
    await harness.bridge.notify(
        alice,
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "abc"}},
    )
    cancelled = await harness.server.read("notifications/cancelled")
    assert cancelled["params"]["requestId"] == forwarded["id"]
    assert (await finished(exchange))["error"]["message"].startswith("The request was cancelled")


async def test_resource_subscriptions_are_reference_counted(harness: Harness) -> None:
    alice, bob = harness.peer("alice", mailbox=Mailbox()), harness.peer("bob", mailbox=Mailbox())
    assert harness.bridge.hold(alice, "file:///a") is True
    assert harness.bridge.hold(bob, "file:///a") is False
    assert harness.bridge.hold(bob, "file:///a") is False
    harness.server.write(
        {
            "jsonrpc": "2.0",
            "method": "notifications/resources/updated",
            "params": {"uri": "file:///a"},
        }
    )
    await eventually(lambda: alice.mailbox is not None and alice.mailbox.pending == 1)
    assert bob.mailbox is not None
    assert bob.mailbox.pending == 1
    assert harness.bridge.release(alice, "file:///a") is False
    harness.bridge.detach(bob)
    unsubscribe = await harness.server.read("resources/unsubscribe")
    assert unsubscribe["params"] == {"uri": "file:///a"}


async def test_list_changed_reaches_every_session_and_matching_listen_streams(
    harness: Harness,
) -> None:
    legacy = harness.peer("legacy", mailbox=Mailbox())
    listening = harness.peer(
        "listen", modern=True, mailbox=Mailbox(), listen={"toolsListChanged": True}, listen_id=42
    )
    prompts_only = harness.peer(
        "prompts", modern=True, mailbox=Mailbox(), listen={"promptsListChanged": True}, listen_id=43
    )
    harness.server.write({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
    await eventually(lambda: listening.mailbox is not None and listening.mailbox.pending == 1)
    assert legacy.mailbox is not None
    assert legacy.mailbox.take() == [
        {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
    ]
    assert listening.mailbox.take()[0]["params"]["_meta"] == {
        "io.modelcontextprotocol/subscriptionId": 42
    }
    assert prompts_only.mailbox is not None
    assert prompts_only.mailbox.pending == 0


async def test_log_messages_respect_each_session_level(harness: Harness) -> None:
    quiet = harness.peer("quiet", mailbox=Mailbox())
    chatty = harness.peer("chatty", mailbox=Mailbox())
    harness.bridge.set_log_level(quiet, "error")
    harness.bridge.set_log_level(chatty, "debug")
    levels = [await harness.server.read("logging/setLevel") for _ in range(2)]
    # The backend logs as much as the most verbose client wants.
    assert [m["params"]["level"] for m in levels] == ["error", "debug"]
    harness.server.write(
        {
            "jsonrpc": "2.0",
            "method": "notifications/message",
            "params": {"level": "info", "data": "hi"},
        }
    )
    await eventually(lambda: chatty.mailbox is not None and chatty.mailbox.pending == 1)
    assert quiet.mailbox is not None
    assert quiet.mailbox.pending == 0


async def test_a_server_request_goes_to_the_client_in_flight_and_its_answer_comes_back(
    harness: Harness,
) -> None:
    alice = harness.peer("alice", capabilities={"elicitation": {}})
    exchange = await harness.send(alice, 1, "tools/call", {"name": "ask"})
    await harness.server.read("tools/call")
    harness.server.write(
        {
            "jsonrpc": "2.0",
            "id": "s1",
            "method": "elicitation/create",
            "params": {"message": "name?"},
        }
    )
    await eventually(lambda: exchange.pending == 1)
    asked = exchange.take()[0]
    assert asked["method"] == "elicitation/create"
    assert asked["id"] != "s1"
    await harness.bridge.respond(
        alice, {"jsonrpc": "2.0", "id": asked["id"], "result": {"action": "decline"}}
    )
    assert await harness.server.read() == {
        "jsonrpc": "2.0",
        "id": "s1",
        "result": {"action": "decline"},
    }


async def test_a_server_request_with_two_clients_in_flight_is_failed_clearly(
    harness: Harness,
) -> None:
    alice = harness.peer("alice", capabilities={"elicitation": {}})
    bob = harness.peer("bob", capabilities={"elicitation": {}})
    await harness.send(alice, 1, "tools/call", {"name": "ask"})
    await harness.send(bob, 1, "tools/call", {"name": "ask"})
    await harness.server.read("tools/call")
    await harness.server.read("tools/call")
    harness.server.write(
        {"jsonrpc": "2.0", "id": "s1", "method": "elicitation/create", "params": {}}
    )
    answer = await harness.server.read()
    assert answer["id"] == "s1"
    assert "2 clients have requests in flight" in answer["error"]["message"]


async def test_a_modern_client_answers_server_requests_through_input_required(
    harness: Harness,
) -> None:
    first_peer = harness.peer("m1", modern=True, capabilities={"elicitation": {}})
    exchange = await harness.send(first_peer, 1, "tools/call", {"name": "ask"})
    call = await harness.server.read("tools/call")
    harness.server.write(
        {
            "jsonrpc": "2.0",
            "id": "s1",
            "method": "elicitation/create",
            "params": {"message": "name?"},
        }
    )
    round_one = (await finished(exchange))["result"]
    assert round_one["resultType"] == "input_required"
    assert round_one["inputRequests"] == {
        "elicitation": {"method": "elicitation/create", "params": {"message": "name?"}}
    }
    harness.bridge.detach(first_peer)
    retry_peer = harness.peer("m2", modern=True, capabilities={"elicitation": {}})
    params = {
        "name": "ask",
        "inputResponses": {"elicitation": {"action": "accept", "content": {"n": "Ada"}}},
        "requestState": round_one["requestState"],
    }
    retry = await harness.send(retry_peer, 2, "tools/call", params)
    assert await harness.server.read() == {
        "jsonrpc": "2.0",
        "id": "s1",
        "result": {"action": "accept", "content": {"n": "Ada"}},
    }
    harness.server.write(
        {
            "jsonrpc": "2.0",
            "id": call["id"],
            "result": {"content": [{"type": "text", "text": "Hello"}]},
        }
    )
    assert await finished(retry) == {
        "jsonrpc": "2.0",
        "id": 2,
        "result": {"content": [{"type": "text", "text": "Hello"}]},
    }


@pytest.mark.parametrize(
    "mangle",
    [lambda s: s[:-1] + ("0" if s[-1] != "0" else "1"), lambda s: "moorage.unknown.00"],
    ids=["tampered", "forged"],
)
async def test_a_request_state_the_proxy_did_not_mint_is_refused(
    harness: Harness, mangle: Any
) -> None:
    peer = harness.peer("m1", modern=True, capabilities={"elicitation": {}})
    exchange = await harness.send(peer, 1, "tools/call", {"name": "ask"})
    await harness.server.read("tools/call")
    harness.server.write(
        {"jsonrpc": "2.0", "id": "s1", "method": "elicitation/create", "params": {}}
    )
    state = (await finished(exchange))["result"]["requestState"]
    retry = await harness.send(
        harness.peer("m2", modern=True),
        2,
        "tools/call",
        {"name": "ask", "requestState": mangle(state)},
    )
    assert (await finished(retry))["error"]["code"] == -32602


async def test_a_request_state_resumes_only_for_the_subject_it_was_minted_for(
    harness: Harness,
) -> None:
    alice = harness.peer("m1", modern=True, capabilities={"elicitation": {}}, principal="alice")
    exchange = await harness.send(alice, 1, "tools/call", {"name": "ask"})
    await harness.server.read("tools/call")
    harness.server.write(
        {"jsonrpc": "2.0", "id": "s1", "method": "elicitation/create", "params": {}}
    )
    state = (await finished(exchange))["result"]["requestState"]
    answer = {"elicitation": {"action": "decline"}}
    params = {"name": "ask", "inputResponses": answer, "requestState": state}
    mallory = harness.peer("m2", modern=True, principal="mallory")
    refused = await harness.send(mallory, 2, "tools/call", params)
    assert (await finished(refused))["error"]["code"] == -32602
    # The call stays parked for its own subject.
    again = harness.peer("m3", modern=True, principal="alice")
    await harness.send(again, 3, "tools/call", params)
    assert (await harness.server.read())["id"] == "s1"


async def test_a_modern_client_without_the_capability_is_reported_to_the_server(
    harness: Harness,
) -> None:
    peer = harness.peer("m1", modern=True, capabilities={})
    await harness.send(peer, 1, "tools/call", {"name": "ask"})
    await harness.server.read("tools/call")
    harness.server.write(
        {"jsonrpc": "2.0", "id": "s1", "method": "sampling/createMessage", "params": {}}
    )
    answer = await harness.server.read()
    assert answer["error"]["code"] == -32021
    assert answer["error"]["data"] == {"requiredCapabilities": {"sampling": {}}}


async def test_a_dying_backend_fails_what_is_in_flight_and_is_started_again(
    harness: Harness,
) -> None:
    alice = harness.peer("alice")
    assert harness.bridge.hold(alice, "file:///kept")
    exchange = await harness.send(alice, 1, "tools/call", {"name": "slow"})
    await harness.server.read("tools/call")
    dead = harness.server
    dead.to_proxy.put_nowait(None)
    error = (await finished(exchange))["error"]
    assert error["code"] == -32603
    assert "process exited with code 1" in error["message"]
    await eventually(lambda: len(harness.channels) == 2 and harness.bridge.connected)
    assert harness.bridge.restarts == 1
    resubscribed = await harness.server.read("resources/subscribe")
    assert resubscribed["params"] == {"uri": "file:///kept"}
    again = await harness.send(alice, 2, "tools/call", {"name": "fast"})
    forwarded = await harness.server.read("tools/call")
    harness.server.write({"jsonrpc": "2.0", "id": forwarded["id"], "result": {}})
    assert (await finished(again))["result"] == {}


async def test_requests_while_the_backend_is_down_get_an_error_not_a_hang() -> None:
    async def refuse() -> StdioChannel:
        raise OSError("no such file: mcp-server")

    bridge = StdioBridge(refuse, connect_wait=0.2, backoff_initial=0.01, backoff_max=0.02)
    await bridge.start()
    try:
        peer = Peer(key="p")
        bridge.attach(peer)
        exchange = Exchange()
        await bridge.request(peer, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, exchange)
        assert exchange.final is not None
        assert "no such file: mcp-server" in exchange.final["error"]["message"]
    finally:
        await bridge.stop()


async def test_a_client_notification_goes_on_rebuilt_from_its_method_and_params(
    harness: Harness,
) -> None:
    alice = harness.peer("alice")
    await harness.bridge.notify(
        alice,
        {
            "jsonrpc": "2.0",
            "method": "notifications/roots/list_changed",
            "id": 3,
            "params": {"_meta": {}},
        },
    )
    forwarded = await harness.server.read("notifications/roots/list_changed")
    assert forwarded == {
        "jsonrpc": "2.0",
        "method": "notifications/roots/list_changed",
        "params": {"_meta": {}},
    }


async def test_a_server_answer_to_an_id_the_bridge_did_not_issue_reaches_nobody(
    harness: Harness,
) -> None:
    alice = harness.peer("alice")
    exchange = await harness.send(alice, 3, "tools/call", {"name": "wait"})
    forwarded = await harness.server.read("tools/call")
    # An answer under the client's own id (3), or any id not in flight, is not routed.
    for stray in [i for i in (3, "3", forwarded["id"] + 1000) if i != forwarded["id"]]:
        harness.server.write({"jsonrpc": "2.0", "id": stray, "error": {"code": 1, "message": "x"}})
    harness.server.write({"jsonrpc": "2.0", "id": forwarded["id"], "result": {"ok": True}})
    assert (await finished(exchange))["result"] == {"ok": True}


async def server_caught_up(harness: Harness) -> None:
    """Wait until the bridge has handled what the server wrote so far (it answers a ping)."""
    harness.server.write({"jsonrpc": "2.0", "id": "caught-up", "method": "ping"})
    assert (await harness.server.read())["id"] == "caught-up"


async def test_a_roots_request_before_any_client_waits_for_one_that_declared_roots(
    harness: Harness,
) -> None:
    harness.server.write({"jsonrpc": "2.0", "id": "r1", "method": "roots/list", "params": {}})
    await server_caught_up(harness)
    # A client without roots, and then one with roots but no stream yet, are not asked.
    plain = harness.peer("plain", mailbox=Mailbox())
    harness.bridge.stream_opened(plain)
    rooted = harness.peer("rooted", capabilities={"roots": {}})
    harness.bridge.stream_opened(rooted)
    assert plain.mailbox is not None
    assert plain.mailbox.pending == 0
    rooted.mailbox = Mailbox()
    harness.bridge.stream_opened(rooted)
    [asked] = rooted.mailbox.take()
    assert asked["method"] == "roots/list"
    await harness.bridge.respond(
        rooted, {"jsonrpc": "2.0", "id": asked["id"], "result": {"roots": []}}
    )
    assert await harness.server.read() == {"jsonrpc": "2.0", "id": "r1", "result": {"roots": []}}


async def test_a_sampling_request_outside_client_requests_goes_to_a_capable_stream(
    harness: Harness,
) -> None:
    harness.peer("plain", mailbox=Mailbox())
    capable = harness.peer("capable", mailbox=Mailbox(), capabilities={"sampling": {}})
    harness.server.write(
        {"jsonrpc": "2.0", "id": "s1", "method": "sampling/createMessage", "params": {}}
    )
    await eventually(lambda: capable.mailbox is not None and capable.mailbox.pending == 1)


async def test_a_sampling_request_no_client_can_take_is_failed_clearly(
    harness: Harness,
) -> None:
    harness.peer("plain", mailbox=Mailbox())
    harness.server.write(
        {"jsonrpc": "2.0", "id": "s1", "method": "sampling/createMessage", "params": {}}
    )
    answer = await harness.server.read()
    assert answer["id"] == "s1"
    assert "no connected client declared the sampling capability" in answer["error"]["message"]


async def test_a_list_change_before_any_client_reaches_the_first_stream_that_opens(
    harness: Harness,
) -> None:
    harness.server.write({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
    await server_caught_up(harness)
    not_listening = harness.peer(
        "prompts", modern=True, mailbox=Mailbox(), listen={"promptsListChanged": True}
    )
    harness.bridge.stream_opened(not_listening)
    first = harness.peer("first", mailbox=Mailbox())
    harness.bridge.stream_opened(first)
    second = harness.peer("second", mailbox=Mailbox())
    harness.bridge.stream_opened(second)
    assert not_listening.mailbox is not None
    assert not_listening.mailbox.pending == 0
    assert first.mailbox is not None
    assert first.mailbox.take() == [
        {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
    ]
    # Told once: any client connecting later lists what is there now.
    assert second.mailbox is not None
    assert second.mailbox.pending == 0
