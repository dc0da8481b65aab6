"""A client's message is read one way only: strict parsing and the notifications clients send."""

from __future__ import annotations

import json

import pytest

from moorage_proxyrunner.backends.reverse.endpoints import forwarded_headers, routing_headers
from moorage_proxyrunner.front.responding import Refusal, check_client_message
from moorage_proxyrunner.protocol import eras
from moorage_proxyrunner.protocol.jsonrpc import (
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    Kind,
    Message,
    Rejection,
    encode,
    parse_client_message,
    parse_message,
)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","Name":"b"}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}',
        b'{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}',
        b'{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call"}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call",'
        b'"params":{"name":"a","arguments":{"deep":[{"path":"/tmp","PATH":"/"}]}}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","\\u004eame":"b"}}',
        # Go folds the Kelvin sign onto k: "\u212aind" and "kind" are one key there.
        b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"kind":"a","\\u212aind":"b"}}',
        b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":{"a":1,"a":1}}}',
    ],
    ids=[
        "case-variant",
        "duplicate",
        "duplicate-id",
        "case-variant-method",
        "nested-argument",
        "escaped-variant",
        "kelvin-sign",
        "duplicate-in-meta",
    ],
)
def test_ambiguous_keys_anywhere_are_refused(raw: bytes) -> None:
    parsed = parse_client_message(raw)
    assert isinstance(parsed, Rejection)
    assert (parsed.code, parsed.id) == (INVALID_REQUEST, None)
    assert "differs from it only in case" in parsed.message
    # Server output is still read leniently.
    assert isinstance(parse_message(raw), Message)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}',
        b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"\\udfff":1}}',
        b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":["ok","\\uDC00"]}}',
        b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":"\\ude00\\ud83d"}}',
        b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":"\xed\xa0\x80"}}',
    ],
    ids=["id", "key", "in-array", "reversed-pair", "raw-utf8-surrogate"],
)
def test_lone_surrogates_anywhere_are_a_parse_error(raw: bytes) -> None:
    parsed = parse_client_message(raw)
    assert isinstance(parsed, Rejection)
    assert (parsed.code, parsed.id) == (PARSE_ERROR, None)
    assert "lone UTF-16 surrogate" in parsed.message
    # The refusal itself can be written as UTF-8.
    encode({"error": parsed.message})


def test_refusals_name_an_odd_key_in_ascii() -> None:
    parsed = parse_client_message(
        '{"jsonrpc":"2.0","id":1,"method":"x","params":{"é":1,"É":2}}'.encode()
    )
    assert isinstance(parsed, Rejection)
    assert "'\\xc9'" in parsed.message


@pytest.mark.parametrize(
    "body",
    [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "😀", "a": "ß"}},
        {"jsonrpc": "2.0", "id": "x", "method": "m", "params": {"a": {"b": [{"c": 1}]}}},
        {"jsonrpc": "2.0", "id": 2, "method": "m", "params": {"name": "a", "names": "b"}},
    ],
    ids=["unicode-and-pairs", "nested", "distinct-keys"],
)
def test_unambiguous_messages_parse_to_what_encode_writes_back(body: dict[str, object]) -> None:
    raw = json.dumps(body).encode()  # ASCII escapes, surrogate pairs included
    parsed = parse_client_message(raw)
    assert isinstance(parsed, Message)
    assert parsed.body == body
    assert parse_client_message(encode(parsed.body)) == parsed


@pytest.mark.parametrize(
    ("method", "modern", "allowed"),
    [
        ("notifications/initialized", False, True),
        ("notifications/cancelled", False, True),
        ("notifications/progress", False, True),
        ("notifications/roots/list_changed", False, True),
        ("notifications/tasks/status", False, True),
        ("notifications/cancelled", True, True),
        ("notifications/initialized", True, False),
        ("notifications/roots/list_changed", True, False),
        ("tools/call", False, False),
        ("tools/call", True, False),
        ("notifications/message", False, False),
        ("notifications/tools/list_changed", False, False),
        ("Notifications/Cancelled", False, False),
    ],
)
def test_only_the_notifications_clients_send_are_let_in(
    method: str, modern: bool, allowed: bool
) -> None:
    refusal = eras.notification_refusal(method, modern=modern)
    assert (refusal is None) is allowed
    raw = encode({"jsonrpc": "2.0", "method": method, "params": {"name": "x"}})
    checked = check_client_message(raw, modern=modern)
    if allowed:
        assert isinstance(checked, Message)
        assert checked.kind is Kind.NOTIFICATION
    else:
        assert checked == Refusal(400, METHOD_NOT_FOUND, checked.message)  # type: ignore[union-attr]
        assert "notifications/cancelled" in checked.message  # type: ignore[union-attr]


def test_requests_and_responses_are_not_notifications() -> None:
    for body in (
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x"}},
        {"jsonrpc": "2.0", "id": 1, "result": {}},
    ):
        assert isinstance(check_client_message(encode(body), modern=True), Message)


@pytest.mark.parametrize(
    ("message", "modern", "expected"),
    [
        (
            {"method": "tools/call", "params": {"name": "public_echo"}},
            True,
            {"Accept": "*/*", "Mcp-Method": "tools/call", "Mcp-Name": "public_echo"},
        ),
        (
            {"method": "resources/read", "params": {"uri": "file:///é"}},
            True,
            {
                "Accept": "*/*",
                "Mcp-Method": "resources/read",
                "Mcp-Name": "=?base64?ZmlsZTovLy/DqQ==?=",
            },
        ),
        ({"method": "tools/list"}, True, {"Accept": "*/*", "Mcp-Method": "tools/list"}),
        ({"method": "tools/call", "params": {"name": "public_echo"}}, False, {"Accept": "*/*"}),
        ({"id": 1, "result": {}}, True, {"Accept": "*/*"}),
    ],
    ids=["modern-call", "modern-non-ascii-uri", "modern-no-name", "legacy", "response"],
)
def test_routing_headers_are_written_from_the_forwarded_message(
    message: dict[str, object], modern: bool, expected: dict[str, str]
) -> None:
    client = {"Accept": "*/*", "mcp-method": "tools/list", "MCP-NAME": "delete_everything"}
    assert routing_headers(client, message, modern=modern) == expected


def test_get_and_delete_forward_no_routing_headers_of_the_client() -> None:
    client = {
        "Accept": "text/event-stream",
        "Mcp-Session-Id": "s",
        "Mcp-Method": "tools/call",
        "mcp-name": "delete_everything",
        "Mcp-Param-Path": "/etc",
        "Authorization": "Bearer t",
    }
    assert forwarded_headers(client) == {"Accept": "text/event-stream", "Mcp-Session-Id": "s"}


MODERN_CALL: dict[str, object] = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {
        "name": "t",
        "arguments": {"region": "eu", "count": 3, "dry": True, "ratio": 0.5, "deep": {}},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"},
    },
}
ROUTED = {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "t"}


@pytest.mark.parametrize(
    ("params", "refused"),
    [
        ({}, None),
        ({"mcp-param-region": "eu", "mcp-param-count": "3", "mcp-param-dry": "true"}, None),
        ({"mcp-param-ratio": "0.5", "mcp-param-unknown": "anything"}, None),
        ({"mcp-param-region": "=?base64?ZXU=?="}, None),
        ({"mcp-param-region": "us"}, "mcp-param-region does not match the argument 'region'"),
        ({"mcp-param-count": "03"}, "mcp-param-count does not match the argument 'count'"),
        ({"mcp-param-deep": "{}"}, "mcp-param-deep does not match the argument 'deep'"),
    ],
    ids=["none", "equal", "float-and-unknown", "base64", "other", "number-text", "object"],
)
def test_param_headers_must_equal_the_argument_they_name(
    params: dict[str, str], refused: str | None
) -> None:
    rejection = eras.check_modern_headers(MODERN_CALL, {**ROUTED, **params})
    if refused is None:
        assert rejection is None
    else:
        assert rejection is not None
        assert (rejection.code, rejection.message) == (eras.HEADER_MISMATCH, refused)


def test_only_param_headers_naming_an_argument_go_on_and_only_once() -> None:
    sent = {"Mcp-Param-Region": "eu", "MCP-PARAM-UNKNOWN": "x", "Accept": "*/*"}
    assert eras.param_headers(MODERN_CALL, sent) == {"Mcp-Param-Region": "eu"}
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    assert eras.param_headers(listing, sent) == {}
    out = routing_headers(
        {"Accept": "*/*", "Mcp-Param-Region": "us"},
        MODERN_CALL,
        modern=True,
        params={"Mcp-Param-Region": "eu"},
    )
    assert out == {
        "Accept": "*/*",
        "Mcp-Param-Region": "eu",
        "Mcp-Method": "tools/call",
        "Mcp-Name": "t",
    }
    legacy = routing_headers({"Mcp-Param-Region": "eu"}, MODERN_CALL, modern=False)
    assert legacy == {}
    assert eras.duplicated_routing_header(["Mcp-Param-A", "mcp-param-a"]) == "mcp-param-a"


def test_a_param_header_differing_from_its_argument_never_goes_on_even_unchecked() -> None:
    # No envelope: the header rung has nothing to compare with, the server refuses the body.
    bare = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
    bare["params"] = {"name": "t", "arguments": {"region": "eu", "deep": {}}}
    assert eras.check_modern_headers(bare, {"mcp-param-region": "us"}) is None
    sent = {"Mcp-Param-Region": "us", "Mcp-Param-Deep": "{}"}
    assert eras.param_headers(bare, sent) == {}
    assert eras.param_headers(bare, {"Mcp-Param-Region": "eu"}) == {"Mcp-Param-Region": "eu"}
