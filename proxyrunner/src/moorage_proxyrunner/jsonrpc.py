"""JSON-RPC 2.0 messages as the proxy reads them off the wire: parse, classify, build errors.

Pure: no I/O. The proxy does not validate MCP payloads (that is the server's job and would cost
time on the hot path); it checks only the envelope it must route on: `jsonrpc`, `id`, `method`,
`params`, `result`/`error`. A body that fails here is answered with the JSON-RPC error named by
the returned `Rejection`; the HTTP layer picks the status.

MCP narrows JSON-RPC: ids are strings or integers (never null), params are objects, and batches
(allowed only by revision 2025-03-26) are not served by this proxy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
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
