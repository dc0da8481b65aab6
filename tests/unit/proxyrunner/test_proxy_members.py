"""A client's envelope is a closed set, and protocol members are spelt exactly.

A server decoding with Go's `encoding/json` reads `"Method"` as `method` and `"Name"` as `name`;
the proxy reads exact names. Each of these keys alone (no exact twin beside it, so nothing is
ambiguous) would let a client say one thing to the proxy and another to the server.
"""

from __future__ import annotations

import inspect

import pydantic
import pytest

from moorage_proxyrunner.protocol.jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    Kind,
    Message,
    Rejection,
    notification_envelope,
    parse_client_message,
    parse_message,
    response_envelope,
)
from moorage_proxyrunner.protocol.members import ENVELOPE_MEMBERS, MEMBER_NAMES


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (
            b'{"jsonrpc":"2.0","id":5,"result":{},"Method":"tools/call",'
            b'"Params":{"name":"delete_everything"}}',
            "Method",
        ),
        (
            b'{"jsonrpc":"2.0","id":5,"error":{"code":1,"message":"m"},"METHOD":"tools/call"}',
            "METHOD",
        ),
        (b'{"jsonrpc":"2.0","method":"notifications/progress","ID":3,"params":{}}', "ID"),
        (b'{"jsonrpc":"2.0","id":1,"method":"ping","Params":{}}', "Params"),
        (b'{"jsonrpc":"2.0","id":1,"method":"ping","extra":1}', "extra"),
    ],
    ids=["fake-response-result", "fake-response-error", "notification-id", "params", "unknown"],
)
def test_a_key_outside_the_envelope_is_refused_by_name(raw: bytes, key: str) -> None:
    parsed = parse_client_message(raw)
    assert isinstance(parsed, Rejection)
    assert parsed.code == INVALID_REQUEST
    assert f"The key '{key}' is not a JSON-RPC member" in parsed.message
    # A server's messages are read leniently still.
    assert isinstance(parse_message(raw), Message)


@pytest.mark.parametrize(
    ("raw", "member"),
    [
        (b'{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}', "result"),
        (b'{"jsonrpc":"2.0","method":"notifications/initialized","error":{}}', "error"),
        (b'{"jsonrpc":"2.0","id":1,"result":{},"params":{}}', "params"),
    ],
    ids=["request-with-result", "notification-with-error", "response-with-params"],
)
def test_requests_carry_no_answer_and_responses_no_params(raw: bytes, member: str) -> None:
    parsed = parse_client_message(raw)
    assert isinstance(parsed, Rejection)
    assert parsed.code == INVALID_REQUEST
    assert f'"{member}"' in parsed.message


@pytest.mark.parametrize(
    ("params", "path", "key", "expected"),
    [
        ('{"Name":"delete_everything"}', "params", "Name", "name"),
        ('{"name":"a","Arguments":{"path":"/etc"}}', "params", "Arguments", "arguments"),
        ('{"URI":"file:///etc/shadow"}', "params", "URI", "uri"),
        ('{"name":"a","_META":{}}', "params", "_META", "_meta"),
        ('{"name":"a","_meta":{"ProgressToken":3}}', "params._meta", "ProgressToken", "progressToken"),
        ('{"ref":{"Type":"ref/prompt","name":"p"}}', "params.ref", "Type", "type"),
        ('{"argument":{"name":"a","VALUE":"x"}}', "params.argument", "VALUE", "value"),
        ('{"requestId":1,"Reason":"r"}', "params", "Reason", "reason"),
        ('{"capabilities":{"Roots":{}}}', "params.capabilities", "Roots", "roots"),
        ('{"capabilities":{"roots":{"ListChanged":true}}}', "params.capabilities.roots",
         "ListChanged", "listChanged"),
        # Go folds the long s onto s and the Kelvin sign onto k.
        ('{"name":"a","argument\\u017f":{}}', "params", "argument\u017f", "arguments"),
        ('{"name":"a","_meta":{"io.modelcontextprotocol/protocolVersion":"x",'
         '"IO.modelcontextprotocol/logLevel":"debug"}}', "params._meta",
         "IO.modelcontextprotocol/logLevel", "io.modelcontextprotocol/logLevel"),
    ],
    ids=[
        "name",
        "arguments",
        "uri",
        "meta",
        "progress-token",
        "ref-type",
        "argument-value",
        "reason",
        "capability",
        "capability-member",
        "long-s",
        "modern-envelope-key",
    ],
)  # fmt: skip
def test_a_protocol_member_spelt_in_other_case_is_refused(
    params: str, path: str, key: str, expected: str
) -> None:
    raw = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":' + params.encode() + b"}"
    parsed = parse_client_message(raw)
    assert isinstance(parsed, Rejection)
    assert (parsed.code, parsed.id) == (INVALID_PARAMS, 1)
    assert f"The key {key!a} in {path} differs only in case" in parsed.message
    assert f"spell it {expected!r}" in parsed.message


def test_a_response_member_spelt_in_other_case_is_refused() -> None:
    parsed = parse_client_message(b'{"jsonrpc":"2.0","id":1,"result":{"Action":"accept"}}')
    assert isinstance(parsed, Rejection)
    assert "in result differs only in case from the MCP member 'action'" in parsed.message


@pytest.mark.parametrize(
    "raw",
    [
        # Tool arguments and data the protocol does not name are the tool's and the user's.
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call",'
        b'"params":{"name":"a","arguments":{"Name":1,"URI":2,"deep":{"Method":3}}}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":{"Foo":1}}}',
        b'{"jsonrpc":"2.0","id":1,"result":{"action":"accept","content":{"Name":"x"}}}',
        b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",'
        b'"capabilities":{"experimental":{"Name":{}}},"clientInfo":{"name":"c","version":"1"}}}',
    ],
    ids=["arguments", "meta-extension", "elicitation-content", "experimental"],
)
def test_keys_the_protocol_does_not_name_pass_in_any_case(raw: bytes) -> None:
    assert isinstance(parse_client_message(raw), Message)


def test_the_member_names_cover_the_mcp_schema_and_never_fold_together() -> None:
    import mcp.types

    schema: set[str] = set()
    for value in vars(mcp.types).values():
        if inspect.isclass(value) and issubclass(value, pydantic.BaseModel):
            schema.update(field.alias or name for name, field in value.model_fields.items())
    assert schema <= MEMBER_NAMES, sorted(schema - MEMBER_NAMES)
    required = {"name", "arguments", "uri", "_meta", "progressToken", "cursor", "ref", "type"}
    required |= {"argument", "value", "level", "requestId", "reason", "protocolVersion"}
    required |= {"capabilities", "clientInfo", "method", "params", "id", "jsonrpc", "result"}
    required |= {"error", "inputResponses", "requestState"}
    assert required <= MEMBER_NAMES
    assert ENVELOPE_MEMBERS <= MEMBER_NAMES
    assert len({name.casefold() for name in MEMBER_NAMES}) == len(MEMBER_NAMES)


def test_responses_and_notifications_are_rebuilt_from_their_members() -> None:
    response = parse_client_message(b'{"id":"s-1","result":{"roots":[]},"jsonrpc":"2.0"}')
    assert isinstance(response, Message)
    assert response.kind is Kind.RESPONSE
    assert response_envelope(response) == {"jsonrpc": "2.0", "id": "s-1", "result": {"roots": []}}
    error = parse_client_message(b'{"jsonrpc":"2.0","id":2,"error":{"code":-1,"message":"no"}}')
    assert isinstance(error, Message)
    assert response_envelope(error) == {
        "jsonrpc": "2.0",
        "id": 2,
        "error": {"code": -1, "message": "no"},
    }
    assert notification_envelope(
        {"jsonrpc": "2.0", "method": "notifications/progress", "id": 3, "params": {"p": 1}}
    ) == {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"p": 1}}
    assert notification_envelope({"jsonrpc": "2.0", "method": "notifications/initialized"}) == {
        "jsonrpc": "2.0",
        "method": "notifications/initialized",
    }
