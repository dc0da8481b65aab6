"""A client's message is read one way only: strict parsing and the notifications clients send."""

from __future__ import annotations

import json

import pytest

from moorage_proxyrunner import eras
from moorage_proxyrunner.backends.reverse import routing_headers
from moorage_proxyrunner.jsonrpc import (
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
from moorage_proxyrunner.responding import Refusal, check_client_message


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
