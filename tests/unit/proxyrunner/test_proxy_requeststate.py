"""The sealed `requestState`: the proxy's bookkeeping around the server's state, and every way a
client's state is refused (altered, forged, another subject's, expired)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage_proxyrunner.protocol import requeststate
from moorage_proxyrunner.protocol.requeststate import (
    ALTERED,
    EXPIRED,
    FOREIGN,
    Bookkeeping,
    StateRefusal,
    StateSeal,
)

SEAL = StateSeal(b"k" * 32)
BOOK = Bookkeeping("alice", "call-1", "server-own-state", 100.0)


def test_a_sealed_state_opens_to_what_was_sealed() -> None:
    assert SEAL.open(SEAL.seal(BOOK), principal="alice", now=50.0) == BOOK


@pytest.mark.parametrize(
    ("mangle", "principal", "now", "refusal"),
    [
        (lambda s: s[:-1] + ("A" if s[-1] != "A" else "B"), "alice", 50.0, ALTERED),
        (lambda s: s.replace(s.split(".")[1][:4], "AAAA", 1), "alice", 50.0, ALTERED),
        (lambda s: "moorage.unknown.00", "alice", 50.0, ALTERED),
        (lambda s: "server-state", "alice", 50.0, ALTERED),
        (lambda s: StateSeal(b"x" * 32).seal(BOOK), "alice", 50.0, ALTERED),
        (lambda s: s + "x" * requeststate.MAX_STATE_CHARS, "alice", 50.0, ALTERED),
        (lambda s: s, "mallory", 50.0, FOREIGN),
        (lambda s: s, None, 50.0, FOREIGN),
        (lambda s: s, "alice", 100.5, EXPIRED),
    ],
    ids=[
        "tampered-mac",
        "tampered-body",
        "forged",
        "not-ours",
        "other-key",
        "too-long",
        "other-subject",
        "unauthenticated",
        "expired",
    ],
)
def test_a_state_is_refused_with_the_reason(
    mangle: Any, principal: str | None, now: float, refusal: StateRefusal
) -> None:
    opened = SEAL.open(mangle(SEAL.seal(BOOK)), principal=principal, now=now)
    assert opened == refusal
    assert opened.code == -32602


def test_a_body_sealed_with_the_right_key_but_unreadable_is_refused() -> None:
    body = requeststate._b64(b'["alice", 1, null, 5]')
    forged = f"{requeststate.STATE_PREFIX}{body}.{SEAL._mac(body)}"
    assert SEAL.open(forged, principal="alice", now=0.0) == ALTERED


@given(st.one_of(st.text(), st.none(), st.integers(), st.lists(st.text())))
def test_no_client_input_opens_or_raises(state: Any) -> None:
    assert isinstance(SEAL.open(state, principal="alice", now=0.0), StateRefusal)


@given(st.text(), st.text())
def test_no_state_with_the_prefix_and_a_guessed_mac_opens(body: str, mac: str) -> None:
    state = f"{requeststate.STATE_PREFIX}{body}.{mac}"
    assert isinstance(SEAL.open(state, principal=None, now=0.0), StateRefusal)


@given(
    st.one_of(st.none(), st.text()),
    st.text(),
    st.one_of(st.none(), st.text()),
    st.floats(allow_nan=False, allow_infinity=False, min_value=0, max_value=1e12),
)
def test_every_bookkeeping_survives_sealing(
    principal: str | None, call: str, server_state: str | None, expires: float
) -> None:
    book = Bookkeeping(principal, call, server_state, expires)
    assert SEAL.open(SEAL.seal(book), principal=principal, now=0.0) == book


def test_wrapping_keeps_the_servers_keys_and_state_and_unwrapping_gives_them_back() -> None:
    result = {
        "resultType": "input_required",
        "inputRequests": {"user_name": {"method": "elicitation/create", "params": {}}},
        "requestState": "server-own-state",
    }
    wrapped = requeststate.wrap(result, SEAL, principal="alice", call="c1", expires=10.0)
    assert list(wrapped["inputRequests"]) == ["user_name"]
    assert wrapped["requestState"] != "server-own-state"
    assert requeststate.is_sealed(wrapped["requestState"])
    answers = {"user_name": {"action": "accept", "content": {"name": "Ada"}}}
    retry = {"name": "t", "inputResponses": answers, "requestState": wrapped["requestState"]}
    opened = requeststate.unwrap(retry, SEAL, principal="alice", now=5.0)
    assert opened == Bookkeeping("alice", "c1", "server-own-state", 10.0)
    assert retry == {"name": "t", "inputResponses": answers, "requestState": "server-own-state"}


def test_unwrapping_a_state_around_no_server_state_leaves_none() -> None:
    result: dict[str, Any] = {"resultType": "input_required", "inputRequests": {}}
    requeststate.wrap(result, SEAL, principal=None, call="c2", expires=10.0)
    retry = {"inputResponses": {}, "requestState": result["requestState"]}
    assert isinstance(requeststate.unwrap(retry, SEAL, principal=None, now=1.0), Bookkeeping)
    assert retry == {"inputResponses": {}}


@pytest.mark.parametrize(("principal", "now"), [("mallory", 1.0), ("alice", 11.0)])
def test_unwrapping_a_refused_state_leaves_the_retry_as_it_was(principal: str, now: float) -> None:
    result: dict[str, Any] = {"resultType": "input_required", "requestState": "s"}
    requeststate.wrap(result, SEAL, principal="alice", call="c3", expires=10.0)
    retry = {"requestState": result["requestState"]}
    assert isinstance(requeststate.unwrap(retry, SEAL, principal=principal, now=now), StateRefusal)
    assert retry == {"requestState": result["requestState"]}
