"""Where a request of an HTTP backend's session goes on a replica that does not hold it
(`placement.route`), and what the session's record keeps for the other replicas."""

from __future__ import annotations

from typing import Any

import pytest

from moorage_proxyrunner.backends.reverse.placement import (
    SSE,
    STREAMABLE,
    Route,
    route,
    sse_state,
    streamable_state,
    subscriptions_of,
    subscriptions_state,
    target_index,
)
from moorage_proxyrunner.protocol.pipeline import Identity
from moorage_proxyrunner.sessionstore.records import SessionRecord, decode_record, encode_record

OWN = "10.0.0.2:8080"
OTHER = "10.0.0.1:8080"
ALICE = Identity("alice", {"groups": ["dev"]})


def record(kind: str = STREAMABLE, *, owner: str = OTHER, subject: str | None = "alice") -> Any:
    return SessionRecord("s1", kind, owner, subject, "", 1.0, streamable_state("http://a/mcp"))


def decide(
    rec: SessionRecord | None,
    identity: Identity = ALICE,
    *,
    kind: str = STREAMABLE,
    needs_owner: bool = False,
    owner_alive: bool = True,
    forwarded: bool = False,
) -> Route:
    return route(
        rec,
        identity,
        kind=kind,
        own=OWN,
        needs_owner=needs_owner,
        owner_alive=owner_alive,
        forwarded=forwarded,
    )


def test_no_record_another_subject_or_another_kind_is_refused_alike() -> None:
    assert decide(None) is Route.REFUSE
    assert decide(record(), Identity("mallory")) is Route.REFUSE
    assert decide(record(), Identity(None)) is Route.REFUSE
    assert decide(record(subject=None), ALICE) is Route.REFUSE
    assert decide(record(SSE)) is Route.REFUSE
    assert decide(record(), kind=SSE) is Route.REFUSE


def test_a_plain_streamable_request_is_served_wherever_it_lands() -> None:
    assert decide(record()) is Route.SERVE
    assert decide(record(owner="")) is Route.SERVE
    assert decide(record(subject=None), Identity(None), owner_alive=False) is Route.SERVE


def test_what_needs_the_owner_goes_to_it_while_it_lives_and_is_adopted_after() -> None:
    assert decide(record(), needs_owner=True) is Route.FORWARD
    assert decide(record(), needs_owner=True, owner_alive=False) is Route.ADOPT
    assert decide(record(owner=""), needs_owner=True) is Route.ADOPT  # released at shutdown
    assert decide(record(owner=OWN), needs_owner=True, owner_alive=False) is Route.SERVE
    # A request another replica forwarded here is never sent on again.
    assert decide(record(), needs_owner=True, forwarded=True) is Route.SERVE


def test_an_sse_post_goes_to_the_stream_and_dies_with_it() -> None:
    sse = record(SSE)
    assert decide(sse, kind=SSE, needs_owner=True) is Route.FORWARD
    assert decide(sse, kind=SSE, needs_owner=True, owner_alive=False) is Route.REFUSE
    assert decide(record(SSE, owner=""), kind=SSE, needs_owner=True) is Route.REFUSE
    # This replica is named the owner but no longer holds the stream.
    assert decide(record(SSE, owner=OWN), kind=SSE, needs_owner=True) is Route.REFUSE
    assert decide(sse, kind=SSE, needs_owner=True, forwarded=True) is Route.REFUSE
    assert decide(sse, Identity("mallory"), kind=SSE, needs_owner=True) is Route.REFUSE


def test_a_record_names_its_target_by_url_and_one_no_longer_configured_is_unknown() -> None:
    rec = record()
    assert target_index(rec, ["http://b/mcp", "http://a/mcp"]) == 1
    assert target_index(rec, ["http://b/mcp"]) is None
    bare = SessionRecord("s1", STREAMABLE, OTHER, None, "", 1.0, {"target": 3})
    assert target_index(bare, ["http://a/mcp"]) is None
    sse = SessionRecord("s2", SSE, OTHER, None, "", 1.0, sse_state("http://a/sse", "http://a/m?x"))
    assert decode_record(encode_record(sse)).state == {
        "target": "http://a/sse",
        "messages": "http://a/m?x",
    }


def test_subscriptions_survive_the_record_and_never_keep_the_token() -> None:
    holder = Identity("alice", {"groups": ["dev"]}, token="secret-token")
    state = subscriptions_state(holder, ["file:///b", "file:///a"], "info")
    assert "secret-token" not in repr(state)
    rec = SessionRecord("s1", STREAMABLE, OTHER, "alice", "", 1.0, state)
    kept = subscriptions_of(decode_record(encode_record(rec)).state)
    assert kept is not None
    assert kept.holder == Identity("alice", {"groups": ["dev"]})
    assert kept.uris == {"file:///a", "file:///b"}
    assert kept.level == "info"


@pytest.mark.parametrize(
    "state",
    [
        {},
        {"holder": "alice"},
        {"holder": {"subject": 3, "claims": {}}},
        {"holder": {"subject": "a", "claims": []}},
        {"holder": {"subject": "a", "claims": {}}, "subscriptions": ["x", 1]},
        {"holder": {"subject": "a", "claims": {}}, "level": 5},
    ],
)
def test_subscriptions_not_in_their_shape_are_none(state: dict[str, Any]) -> None:
    assert subscriptions_of(state) is None


def test_no_subscriptions_clear_the_keys() -> None:
    assert subscriptions_state(None, [], None) == {
        "subscriptions": None,
        "level": None,
        "holder": None,
    }
