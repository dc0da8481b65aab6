"""The JSON-RPC envelope parser: every input gets a message or a rejection, never an exception."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage_proxyrunner.protocol.jsonrpc import (
    INVALID_REQUEST,
    PARSE_ERROR,
    Kind,
    Message,
    Rejection,
    classify,
    encode,
    error_response,
    parse_message,
)


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, Kind.REQUEST),
        (
            {"jsonrpc": "2.0", "id": "a", "method": "tools/call", "params": {"name": "x"}},
            Kind.REQUEST,
        ),
        ({"jsonrpc": "2.0", "method": "notifications/initialized"}, Kind.NOTIFICATION),
        ({"jsonrpc": "2.0", "id": 1, "result": {}}, Kind.RESPONSE),
        ({"jsonrpc": "2.0", "id": "x", "error": {"code": -32601, "message": "no"}}, Kind.RESPONSE),
    ],
    ids=["request", "string-id", "notification", "result", "error"],
)
def test_well_formed_messages_are_classified(body: dict[str, Any], kind: Kind) -> None:
    parsed = parse_message(json.dumps(body))
    assert isinstance(parsed, Message)
    assert parsed.kind is kind
    assert parsed.body == body


@pytest.mark.parametrize(
    ("raw", "code", "request_id"),
    [
        (b"{", PARSE_ERROR, None),
        (b"\xff\xfe", PARSE_ERROR, None),
        (b"[]", INVALID_REQUEST, None),
        (b'[{"jsonrpc":"2.0","id":1,"method":"a"}]', INVALID_REQUEST, None),
        (b'"hello"', INVALID_REQUEST, None),
        (b'{"id":1,"method":"a"}', INVALID_REQUEST, 1),
        (b'{"jsonrpc":"1.0","id":1,"method":"a"}', INVALID_REQUEST, 1),
        (b'{"jsonrpc":"2.0","id":1,"method":""}', INVALID_REQUEST, 1),
        (b'{"jsonrpc":"2.0","id":1,"method":5}', INVALID_REQUEST, 1),
        (b'{"jsonrpc":"2.0","id":1,"method":"a","params":[1]}', INVALID_REQUEST, 1),
        (b'{"jsonrpc":"2.0","id":null,"method":"a"}', INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","id":true,"method":"a"}', INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","id":1.5,"method":"a"}', INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","id":1}', INVALID_REQUEST, 1),
        (
            b'{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"m"}}',
            INVALID_REQUEST,
            1,
        ),
        (b'{"jsonrpc":"2.0","id":1,"result":[]}', INVALID_REQUEST, 1),
        (b'{"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"m"}}', INVALID_REQUEST, 1),
        (b'{"jsonrpc":"2.0","result":{}}', INVALID_REQUEST, None),
        (b"1" * 5000, PARSE_ERROR, None),
        (b"[" * 100000, PARSE_ERROR, None),
    ],
    ids=[
        "truncated",
        "not-utf8",
        "empty-batch",
        "batch",
        "string",
        "no-jsonrpc",
        "wrong-version",
        "empty-method",
        "numeric-method",
        "array-params",
        "null-id",
        "boolean-id",
        "float-id",
        "id-only",
        "result-and-error",
        "array-result",
        "bad-error-code",
        "response-without-id",
        "huge-integer",
        "deep-nesting",
    ],
)
def test_malformed_bodies_are_rejected_with_the_right_code(
    raw: bytes, code: int, request_id: Any
) -> None:
    parsed = parse_message(raw)
    assert isinstance(parsed, Rejection)
    assert parsed.code == code
    assert parsed.id == request_id


def test_a_batch_is_named_in_the_rejection() -> None:
    parsed = parse_message(b'[{"jsonrpc":"2.0","id":1,"method":"a"}]')
    assert isinstance(parsed, Rejection)
    assert "batch" in parsed.message


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
ids = st.integers() | st.text(max_size=10)
params = st.dictionaries(st.text(max_size=8), json_values, max_size=4)


@given(st.binary(max_size=200))
def test_any_bytes_give_a_message_or_a_rejection(raw: bytes) -> None:
    assert isinstance(parse_message(raw), Message | Rejection)


@given(json_values)
def test_any_json_value_gives_a_message_or_a_rejection(value: Any) -> None:
    parsed = classify(value)
    assert isinstance(parsed, Message | Rejection)
    if isinstance(parsed, Message):
        assert isinstance(value, dict)
        assert value["jsonrpc"] == "2.0"


@given(request_id=ids, method=st.text(min_size=1, max_size=20), body_params=params)
def test_requests_round_trip_through_encode(
    request_id: Any, method: str, body_params: dict[str, Any]
) -> None:
    body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": body_params}
    parsed = parse_message(encode(body))
    assert isinstance(parsed, Message)
    assert parsed.kind is Kind.REQUEST
    assert (parsed.id, parsed.method, parsed.params) == (request_id, method, body_params)


@given(method=st.text(min_size=1, max_size=20), body_params=params)
def test_notifications_have_no_id(method: str, body_params: dict[str, Any]) -> None:
    parsed = parse_message(encode({"jsonrpc": "2.0", "method": method, "params": body_params}))
    assert isinstance(parsed, Message)
    assert parsed.kind is Kind.NOTIFICATION
    assert parsed.id is None


@given(request_id=ids, code=st.integers(), message=st.text(max_size=30), data=json_values)
def test_error_responses_parse_as_responses(
    request_id: Any, code: int, message: str, data: Any
) -> None:
    parsed = parse_message(encode(error_response(request_id, code, message, data)))
    assert isinstance(parsed, Message)
    assert parsed.kind is Kind.RESPONSE


def test_encoding_is_one_line() -> None:
    assert b"\n" not in encode({"jsonrpc": "2.0", "method": "x", "params": {"text": "a\nb"}})
