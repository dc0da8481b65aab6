"""Translations between a modern-era stdio backend and handshake-era clients (table-driven)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage_proxyrunner.protocol import eras, translation
from moorage_proxyrunner.protocol.translation import ServerRequest, Untranslatable

INFO = {"name": "fixture", "version": "1.0.0"}
DISCOVER = {
    "supportedVersions": ["2026-07-28"],
    "capabilities": {"tools": {"listChanged": True}, "logging": {}},
    "instructions": "Be nice.",
    "resultType": "complete",
    "_meta": {eras.SERVER_INFO_KEY: INFO},
}


@pytest.mark.parametrize(
    ("reply", "era"),
    [
        ({"result": DISCOVER}, "modern"),
        ({"result": {"supportedVersions": ["2026-07-28", "2099-01-01"]}}, "modern"),
        ({"result": {"supportedVersions": ["2025-11-25"]}}, "handshake"),
        ({"result": {}}, "handshake"),
        ({"error": {"code": -32601, "message": "Method not found"}}, "handshake"),
        ({"error": {"code": -32600, "message": "not initialized"}}, "handshake"),
        ({"error": {"code": -32603, "message": "boom"}}, "handshake"),
    ],
)
def test_the_probe_answer_decides_the_era(reply: dict[str, Any], era: str) -> None:
    assert translation.era_of_probe(reply) == era


def test_the_probe_carries_the_modern_envelope() -> None:
    probe = translation.discover_params({"sampling": {}}, {"name": "proxy", "version": "1"})
    assert probe["_meta"] == {
        eras.PROTOCOL_VERSION_KEY: "2026-07-28",
        eras.CLIENT_CAPABILITIES_KEY: {"sampling": {}},
        eras.CLIENT_INFO_KEY: {"name": "proxy", "version": "1"},
    }


@pytest.mark.parametrize(
    ("requested", "version"),
    [("2025-11-25", "2025-11-25"), ("2025-03-26", "2025-03-26"), ("2031-01-01", "2025-11-25")],
)
def test_initialize_is_answered_from_discover(requested: str, version: str) -> None:
    assert translation.initialize_from_discover(DISCOVER, requested) == {
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": True}, "logging": {}},
        "serverInfo": INFO,
        "instructions": "Be nice.",
    }


def test_initialize_from_a_sparse_discover_still_names_a_server() -> None:
    result = translation.initialize_from_discover({}, "2025-11-25")
    assert result["capabilities"] == {}
    assert set(result["serverInfo"]) == {"name", "version"}
    assert "instructions" not in result


@pytest.mark.parametrize(
    ("params", "level", "meta"),
    [
        ({}, None, {}),
        ({}, "debug", {eras.LOG_LEVEL_KEY: "debug"}),
        (
            {"_meta": {"progressToken": 3}},
            "error",
            {"progressToken": 3, eras.LOG_LEVEL_KEY: "error"},
        ),
        ({"_meta": {eras.LOG_LEVEL_KEY: "debug"}}, None, {}),
    ],
)
def test_a_handshake_request_gets_the_envelope_and_its_sessions_level(
    params: dict[str, Any], level: str | None, meta: dict[str, Any]
) -> None:
    done = translation.with_envelope(
        params, capabilities={"roots": {}}, client_info={"name": "c"}, log_level=level
    )
    assert done["_meta"] == {
        eras.PROTOCOL_VERSION_KEY: "2026-07-28",
        eras.CLIENT_CAPABILITIES_KEY: {"roots": {}},
        eras.CLIENT_INFO_KEY: {"name": "c"},
        **meta,
    }


def test_input_requests_become_server_requests_under_the_servers_keys() -> None:
    result = {
        "resultType": "input_required",
        "inputRequests": {
            "user_name": {"method": "elicitation/create", "params": {"message": "name?"}},
            "greeting": {"method": "sampling/createMessage", "params": {"maxTokens": 5}},
            "client_roots": {"method": "roots/list"},
        },
        "requestState": "s",
    }
    assert translation.server_requests(result) == [
        ServerRequest("user_name", "elicitation/create", {"message": "name?"}),
        ServerRequest("greeting", "sampling/createMessage", {"maxTokens": 5}),
        ServerRequest("client_roots", "roots/list", {}),
    ]


@pytest.mark.parametrize(
    "requests",
    [
        {"k": {"method": "tools/call", "params": {}}},
        {"k": {"params": {}}},
        {"k": "elicitation/create"},
        ["elicitation/create"],
    ],
    ids=["unknown-method", "no-method", "not-an-object", "not-a-map"],
)
def test_an_input_request_no_handshake_request_can_carry_is_refused(requests: Any) -> None:
    refused = translation.server_requests({"inputRequests": requests})
    assert isinstance(refused, Untranslatable)
    assert refused.code == -32603


def test_a_state_only_input_required_asks_nothing() -> None:
    assert translation.server_requests({"requestState": "s"}) == []


def test_answers_go_back_under_the_servers_keys_and_extra_ones_are_left_out() -> None:
    asked = [
        ServerRequest("user_name", "elicitation/create", {}),
        ServerRequest("client_roots", "roots/list", {}),
    ]
    answers = {"user_name": {"action": "decline"}, "client_roots": {"roots": []}, "other": {}}
    assert translation.input_responses(asked, answers) == {
        "user_name": {"action": "decline"},
        "client_roots": {"roots": []},
    }


@pytest.mark.parametrize(
    ("params", "state", "expected"),
    [
        ({"name": "t"}, "s2", {"name": "t", "inputResponses": {"a": {}}, "requestState": "s2"}),
        ({"name": "t", "requestState": "s1"}, None, {"name": "t", "inputResponses": {"a": {}}}),
        (
            {"name": "t", "inputResponses": {"old": {}}, "requestState": "s1"},
            "s2",
            {"name": "t", "inputResponses": {"a": {}}, "requestState": "s2"},
        ),
    ],
)
def test_the_retry_carries_this_rounds_answers_and_the_servers_state(
    params: dict[str, Any], state: str | None, expected: dict[str, Any]
) -> None:
    before = copy.deepcopy(params)
    assert translation.retry_params(params, {"a": {}}, state) == expected
    assert params == before


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (
            {"content": [], "resultType": "complete", "_meta": {eras.SERVER_INFO_KEY: INFO}},
            {"content": []},
        ),
        (
            {"tools": [], "ttlMs": 0, "cacheScope": "private", "_meta": {"x": 1}},
            {"tools": [], "_meta": {"x": 1}},
        ),
        ({"content": []}, {"content": []}),
    ],
)
def test_a_modern_result_reaches_a_handshake_client_without_modern_fields(
    result: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert translation.handshake_result(result) == expected


@given(
    st.dictionaries(
        st.text(max_size=8),
        st.recursive(
            st.none() | st.text(),
            lambda c: st.dictionaries(st.text(max_size=8), c, max_size=3),
            max_leaves=6,
        ),
        max_size=4,
    )
)
def test_any_input_requests_either_translate_or_are_refused(requests: dict[str, Any]) -> None:
    translated = translation.server_requests({"inputRequests": requests})
    if isinstance(translated, list):
        assert [r.key for r in translated] == list(requests)
        assert all(r.method in eras.CAPABILITY_FOR_SERVER_REQUEST for r in translated)
