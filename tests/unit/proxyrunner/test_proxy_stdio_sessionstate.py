"""The pure side of sharing the stdio bridge's sessions between replicas: where a request for a
session held elsewhere goes, a record's state back to a client, a stream resumed from the store,
event ids that stay unique when another replica adopts the session, and a parked modern call's
sealed state naming the replica that holds it."""

from __future__ import annotations

import json

import pytest
from testkit.stdiochannels import BridgeHarness
from testkit.waiting import eventually

from moorage_proxyrunner.backends.stdio.peers import Peer
from moorage_proxyrunner.backends.stdio.sessionstate import (
    Route,
    initial_state,
    restore,
    resume_from_store,
    route,
    subscriptions_state,
)
from moorage_proxyrunner.front.replaying import (
    STREAMS_PER_EPOCH,
    ReplayLog,
    pack_event,
    parse_event_id,
    stream_of,
    unpack_event,
)
from moorage_proxyrunner.front.streams import Exchange

OWN = "10.0.0.2:8080"
OTHER = "10.0.0.1:8080"


@pytest.mark.parametrize(
    ("kind", "owner", "alive", "forwarded", "expected"),
    [
        # The owner is alive: it keeps serving the session (its streams and waiters are there).
        ("streamable-http", OTHER, True, False, Route.FORWARD),
        ("sse", OTHER, True, False, Route.FORWARD),
        # The owner is gone, or released the session at shutdown: adopt it here.
        ("streamable-http", OTHER, False, False, Route.ADOPT),
        ("streamable-http", "", False, False, Route.ADOPT),
        # A process restarted at this replica's address does not hold it: adopt.
        ("streamable-http", OWN, True, False, Route.ADOPT),
        ("streamable-http", OWN, True, True, Route.ADOPT),
        # An HTTP+SSE session's stream ended with its owner: nothing can reach its client.
        ("sse", OTHER, False, False, Route.GONE),
        ("sse", "", False, False, Route.GONE),
        ("sse", OWN, True, True, Route.GONE),
        # Forwarded here although another live replica owns it: never passed on again.
        ("streamable-http", OTHER, True, True, Route.MOVED),
        ("sse", OTHER, True, True, Route.GONE),
    ],
)
def test_a_session_goes_to_its_live_owner_and_is_adopted_only_when_it_is_gone(
    kind: str, owner: str, alive: bool, forwarded: bool, expected: Route
) -> None:
    got = route(kind=kind, owner=owner, own=OWN, owner_alive=alive, forwarded=forwarded)
    assert got is expected


def test_a_records_state_gives_back_the_client_it_describes() -> None:
    state = initial_state({"sampling": {}, "roots": {"listChanged": True}})
    state.update({"logLevel": "debug", **subscriptions_state({"b://2", "a://1"})})
    restored = restore(state)
    assert restored.capabilities == {"sampling": {}, "roots": {"listChanged": True}}
    assert restored.log_level == "debug"
    assert restored.subscriptions == ("a://1", "b://2")
    assert restored.epoch == 0
    assert restored.resumable
    assert subscriptions_state(set()) == {"subscriptions": None}


def test_a_state_of_the_wrong_shape_is_dropped_not_handed_to_the_backend() -> None:
    restored = restore(
        {
            "capabilities": ["sampling"],
            "logLevel": "loud",
            "subscriptions": ["a://1", 7, None],
            "epoch": True,
            "resumable": False,
        }
    )
    assert restored.capabilities == {}
    assert restored.log_level is None
    assert restored.subscriptions == ("a://1",)
    assert restored.epoch == 0
    assert not restored.resumable
    assert restore({"epoch": -3}).epoch == 0


def packed(request_id: object, message: dict[str, object], *, final: bool = False) -> bytes:
    return pack_event(request_id, json.dumps(message).encode(), final=final)  # type: ignore[arg-type]


PROGRESS = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}}


def test_events_are_packed_with_their_request_and_unpacked_exactly() -> None:
    data = b'{"jsonrpc":"2.0","id":"a\\nb","result":{}}'
    event = unpack_event(pack_event("a\nb", data, final=True))
    assert event is not None
    assert (event.request_id, event.final, event.data) == ("a\nb", True, data)
    assert unpack_event(b"no header") is None
    assert unpack_event(b"[1]\n{}") is None
    assert unpack_event(b'[{"x":1},false]\n{}') is None


def test_a_request_stream_resumed_from_the_store_ends_with_its_response() -> None:
    response = {"jsonrpc": "2.0", "id": 4, "result": {"ok": True}}
    stored = resume_from_store(
        [("7-2", packed(4, PROGRESS)), ("7-3", packed(4, response, final=True))], None
    )
    assert stored is not None
    assert stored.request_stream
    assert [shown for shown, _ in stored.events] == ["7-2", None]
    assert json.loads(stored.events[-1][1]) == response


def test_a_request_that_died_with_its_replica_ends_with_an_error_it_may_retry() -> None:
    # Events after the client's last one, or none at all: the in-flight marker names the request.
    for events in ([("7-2", packed("r1", PROGRESS))], []):
        stored = resume_from_store(events, "r1")
        assert stored is not None
        assert stored.request_stream
        last = json.loads(stored.events[-1][1])
        assert stored.events[-1][0] is None
        assert last["id"] == "r1"
        assert last["error"]["code"] == -32603
        assert "may be retried" in last["error"]["message"]


def test_the_get_stream_resumed_from_the_store_goes_on() -> None:
    stored = resume_from_store([("3-9", packed(None, PROGRESS))], None)
    assert stored is not None
    assert not stored.request_stream
    assert stored.events == [("3-9", json.dumps(PROGRESS).encode())]
    assert resume_from_store([("3-9", b"garbage")], None) is None


class Sink:
    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def request_opened(self, stream: str, request_id: object) -> None:
        self.calls.append(("opened", stream, request_id))

    def event(self, stream: str, event_id: str, packed: bytes) -> None:
        self.calls.append(("event", stream, event_id, unpack_event(packed)))

    def request_closed(self, stream: str) -> None:
        self.calls.append(("closed", stream))


async def test_an_adopted_sessions_log_mints_ids_no_earlier_holder_minted() -> None:
    first = ReplayLog(window=10, max_bytes=1000)
    adopted = ReplayLog(window=10, max_bytes=1000, epoch=1)
    ids = {first.record(first.open_stream(), b"{}") for _ in range(3)}
    later = adopted.record(adopted.open_stream(), b"{}")
    assert later is not None
    assert later not in ids
    position = parse_event_id(later)
    assert position is not None
    assert position[0] == STREAMS_PER_EPOCH + 1
    assert stream_of(later) == str(STREAMS_PER_EPOCH + 1)
    assert stream_of("junk") is None


async def test_the_log_tells_its_sink_each_event_and_which_request_is_in_flight() -> None:
    sink = Sink()
    log = ReplayLog(window=10, max_bytes=1000, sink=sink)
    stream = log.open_stream(request_id=9)
    log.record(stream, b"{}")
    log.record(stream, b'{"id":9}', final=True)
    log.close_stream(stream)
    get = log.open_stream(standalone=True)
    log.record(get, b"{}")
    log.close_stream(get)
    kinds = [call[0] for call in sink.calls]
    assert kinds == ["opened", "event", "event", "closed", "event"]
    assert sink.calls[0] == ("opened", "1", 9)
    final = sink.calls[2][3]
    assert final is not None
    assert final.final
    assert final.request_id == 9
    assert sink.calls[4][3].request_id is None  # type: ignore[union-attr]


async def test_a_parked_calls_state_names_its_replica_and_opens_on_every_replica() -> None:
    key = bytes(range(32))
    here, there = BridgeHarness(), BridgeHarness()
    for harness, address in ((here, "10.0.0.1:8080"), (there, "10.0.0.2:8080")):
        harness.bridge.use_seal_key(key)
        harness.bridge.address = address
        await harness.bridge.start()
        assert await harness.bridge.wait_connected(10)
    try:
        peer = Peer(key="m1", modern=True, capabilities={"elicitation": {}}, principal="alice")
        here.bridge.attach(peer)
        exchange = Exchange()
        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "ask"}}
        await here.bridge.request(peer, call, exchange)
        await here.server.read("tools/call")
        here.server.write({"jsonrpc": "2.0", "id": "s1", "method": "elicitation/create"})
        await eventually(lambda: exchange.finished)
        assert exchange.final is not None
        state = exchange.final["result"]["requestState"]
        for harness in (here, there):
            assert harness.bridge.parked_at(state, principal="alice") == "10.0.0.1:8080"
            assert harness.bridge.parked_at(state, principal="mallory") is None
        # The retry reaching a replica that does not hold the call (its holder is gone).
        elsewhere = Peer(key="m2", modern=True, capabilities={"elicitation": {}}, principal="alice")
        there.bridge.attach(elsewhere)
        retry = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "ask", "requestState": state, "inputResponses": {}},
        }
        refused = Exchange()
        await there.bridge.request(elsewhere, retry, refused)
        assert refused.final is not None
        assert refused.final["error"]["code"] == -32602
        assert "replica holding this call stopped" in refused.final["error"]["message"]
    finally:
        await here.bridge.stop()
        await there.bridge.stop()
