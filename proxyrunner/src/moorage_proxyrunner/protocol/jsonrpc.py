"""JSON-RPC 2.0 messages as the proxy reads them off the wire: parse, classify, build errors.

Pure: no I/O. The proxy does not validate MCP payloads (that is the server's job and would cost
time on the hot path); it checks only the envelope it must route on: `jsonrpc`, `id`, `method`,
`params`, `result`/`error`. A body that fails here is answered with the JSON-RPC error named by
the returned `Rejection`; the HTTP layer picks the status.

MCP narrows JSON-RPC: ids are strings or integers (never null), params are objects, and batches
(allowed only by revision 2025-03-26) are not served by this proxy.

What a client sends is read more strictly (`parse_client_message`), because the proxy authorises
and audits its own reading of the message and the server must not be able to read it another
way: an object with a duplicate key, or with two keys that differ only in case (Go's
`encoding/json`, among others, matches keys case-insensitively, the last one winning), is
refused wherever it occurs, and so is a string holding a lone UTF-16 surrogate (not Unicode: it
cannot be audited or re-encoded as UTF-8). Its envelope is a closed set and the members of its
protocol objects are spelt exactly (`members`): a key Go would read as `method`, `id` or `name`
cannot hide next to what the proxy reads. The message is then forwarded as `encode` writes the
parsed object, never as the client's bytes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from moorage_proxyrunner.protocol.members import foreign_envelope_key, misspelt_member

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
FORBIDDEN: Final = -32003
"""A denial by the access policy (HTTP 403). Outside the codes MCP and its SDKs assign."""
HEADER_MISMATCH: Final = -32020
"""2026-07-28: HTTP headers disagree with the body."""
MISSING_CLIENT_CAPABILITY: Final = -32021
"""2026-07-28: the request needs a client capability the client did not declare."""
UNSUPPORTED_PROTOCOL_VERSION: Final = -32022
"""2026-07-28: the requested protocol version is not served."""

RequestId = str | int
Json = dict[str, Any]


class Kind(Enum):
    REQUEST = "request"
    NOTIFICATION = "notification"
    RESPONSE = "response"


@dataclass(frozen=True, slots=True)
class Message:
    """One well-formed JSON-RPC message.

    `body` is the decoded object itself (not a copy): whoever holds the Message owns it and may
    rewrite it in place (ids, progress tokens) before re-encoding.
    """

    kind: Kind
    body: Json

    @property
    def id(self) -> RequestId | None:
        value: RequestId | None = self.body.get("id")
        return value

    @property
    def method(self) -> str:
        """The method of a request or notification; empty for a response."""
        value: str = self.body.get("method", "")
        return value

    @property
    def params(self) -> Json:
        """The params object (empty when absent)."""
        value: Json = self.body.get("params") or {}
        return value


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a body is not a message we serve, as the JSON-RPC error to answer with."""

    code: int
    message: str
    id: RequestId | None = None


def is_request_id(value: Any) -> bool:
    """MCP ids: strings or integers; booleans are not integers here."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def parse_message(data: bytes | str) -> Message | Rejection:
    """Decode one JSON-RPC message; a `Rejection` for anything else (never raises)."""
    try:
        decoded = json.loads(data)
    except (ValueError, RecursionError, UnicodeDecodeError):
        # ValueError covers JSONDecodeError and over-long integer literals.
        return Rejection(PARSE_ERROR, "Parse error: the body is not valid JSON")
    return classify(decoded)


class AmbiguousKeys(ValueError):
    """An object with a duplicate key or two keys equal but for case; `key` is one of them."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def unambiguous_object(pairs: list[tuple[str, Any]]) -> Json:
    """`json.loads`'s `object_pairs_hook`: the object, or `AmbiguousKeys`.

    `casefold` equates at least what Go's `encoding/json` equates (it also folds the Kelvin
    sign and the long s onto k and s); refusing a few more pairs (ß and ss) is the safe side.
    """
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise AmbiguousKeys(key)
            seen.add(key)
    if len(obj) > 1:
        joined = "".join(obj)
        if joined.isascii() and joined == joined.lower():
            return obj  # distinct keys without capitals cannot collide when folded
        folded = {key.casefold() for key in obj}
        if len(folded) != len(obj):
            firsts: dict[str, str] = {}
            for key in obj:
                first = firsts.setdefault(key.casefold(), key)
                if first != key:
                    raise AmbiguousKeys(key)
    return obj


_SURROGATE_HINT = re.compile(rb"\\u[dD][89abcdefABCDEF]|\xed[\xa0-\xbf]")
"""Bytes that may decode to a surrogate: an escape `\\uD800`-`\\uDFFF`, or one encoded raw
(Python's decoder lets both through). A pair decodes to one character and passes the check."""


def has_lone_surrogate(value: Any) -> bool:
    """Whether a decoded JSON value holds a lone surrogate in any string, key or value."""
    if isinstance(value, str):
        return any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, dict):
        return any(has_lone_surrogate(k) or has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_lone_surrogate(v) for v in value)
    return False


def parse_client_message(data: bytes | str) -> Message | Rejection:
    """Decode one JSON-RPC message from a client, strictly (see the module docstring)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    try:
        decoded = json.loads(raw, object_pairs_hook=unambiguous_object)
    except AmbiguousKeys as exc:
        return Rejection(
            INVALID_REQUEST,
            f"An object in the message has the key {exc.key[:64]!a} twice, or next to a key "
            "that differs from it only in case; send each key once",
        )
    except (ValueError, RecursionError, UnicodeDecodeError):
        return Rejection(PARSE_ERROR, "Parse error: the body is not valid JSON")
    if _SURROGATE_HINT.search(raw) is not None and has_lone_surrogate(decoded):
        return Rejection(
            PARSE_ERROR,
            "Parse error: a string in the message holds a lone UTF-16 surrogate "
            "(\\ud800-\\udfff without its pair), which is not Unicode text",
        )
    classified = classify(decoded)
    if isinstance(classified, Rejection):
        return classified
    return envelope_rejection(classified)


def envelope_rejection(message: Message) -> Message | Rejection:
    """`message` when its envelope is closed and its protocol members spelt exactly, else why
    not (`members`); client messages only, a server's are read leniently."""
    body = message.body
    foreign = foreign_envelope_key(body)
    if foreign is not None:
        return Rejection(
            INVALID_REQUEST,
            f"The key {foreign[:64]!a} is not a JSON-RPC member; a message has only jsonrpc, "
            "id, method and params (a request), or jsonrpc, id and result or error (a response)",
            message.id,
        )
    if message.kind is Kind.RESPONSE:
        if "params" in body:
            return Rejection(
                INVALID_REQUEST,
                'A response has no "params" member; send result or error',
                message.id,
            )
    else:
        stray = "result" if "result" in body else "error" if "error" in body else None
        if stray is not None:
            return Rejection(
                INVALID_REQUEST,
                f'A request or notification has no "{stray}" member; a response has no "method"',
                message.id,
            )
    misspelt = misspelt_member(body)
    if misspelt is not None:
        code = INVALID_REQUEST if not misspelt.path else INVALID_PARAMS
        return Rejection(code, misspelt.describe(), message.id)
    return message


def response_envelope(message: Message) -> Json:
    """A client's response rebuilt from the members the proxy read (the envelope is closed
    already; rebuilding keeps it so whatever changes upstream of this)."""
    body = message.body
    out: Json = {"jsonrpc": "2.0", "id": body["id"]}
    if "result" in body:
        out["result"] = body["result"]
    else:
        out["error"] = body["error"]
    return out


def notification_envelope(body: Json) -> Json:
    """A client notification rebuilt from its method and params only."""
    out: Json = {"jsonrpc": "2.0", "method": body["method"]}
    if "params" in body:
        out["params"] = body["params"]
    return out


def classify(decoded: Any) -> Message | Rejection:
    """Check a decoded value's JSON-RPC envelope."""
    if isinstance(decoded, list):
        return Rejection(INVALID_REQUEST, "JSON-RPC batches are not supported; send one message")
    if not isinstance(decoded, dict):
        return Rejection(INVALID_REQUEST, "A JSON-RPC message must be a JSON object")
    raw_id = decoded.get("id")
    good_id = raw_id if is_request_id(raw_id) else None
    if decoded.get("jsonrpc") != "2.0":
        return Rejection(INVALID_REQUEST, 'The "jsonrpc" member must be "2.0"', good_id)
    if "method" in decoded:
        method = decoded["method"]
        if not isinstance(method, str) or not method:
            return Rejection(
                INVALID_REQUEST, 'The "method" member must be a non-empty string', good_id
            )
        params = decoded.get("params")
        if params is not None and not isinstance(params, dict):
            return Rejection(INVALID_REQUEST, 'The "params" member must be an object', good_id)
        if "id" not in decoded:
            return Message(Kind.NOTIFICATION, decoded)
        if good_id is None:
            return Rejection(INVALID_REQUEST, 'The "id" member must be a string or an integer')
        return Message(Kind.REQUEST, decoded)
    if good_id is None:
        return Rejection(
            INVALID_REQUEST, "A message needs a method, or an id with a result or error"
        )
    has_result = "result" in decoded
    error = decoded.get("error")
    if has_result == ("error" in decoded):
        return Rejection(
            INVALID_REQUEST, "A response carries exactly one of result and error", good_id
        )
    if has_result and not isinstance(decoded["result"], dict):
        return Rejection(INVALID_REQUEST, 'The "result" member must be an object', good_id)
    if not has_result and not (
        isinstance(error, dict)
        and isinstance(error.get("code"), int)
        and not isinstance(error.get("code"), bool)
        and isinstance(error.get("message"), str)
    ):
        return Rejection(
            INVALID_REQUEST, 'The "error" member needs an integer code and a message', good_id
        )
    return Message(Kind.RESPONSE, decoded)


def error_response(request_id: RequestId | None, code: int, message: str, data: Any = None) -> Json:
    """A JSON-RPC error response (`id` null when the request's id could not be read)."""
    error: Json = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def rejection_response(rejection: Rejection) -> Json:
    return error_response(rejection.id, rejection.code, rejection.message)


def result_response(request_id: RequestId, result: Json) -> Json:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def encode(message: Json) -> bytes:
    """Compact UTF-8 JSON, one line (JSON never needs a raw newline)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
