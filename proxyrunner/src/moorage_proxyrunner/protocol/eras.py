"""MCP protocol revisions and what the proxy must do differently for each era.

Pure: no I/O. The legacy era (2024-11-05 … 2025-11-25) has the `initialize` handshake and
sessions; the modern era (2026-07-28) is stateless: every request carries its protocol version,
client capabilities and client info in `params._meta`, HTTP headers must mirror the body, and a
server never sends requests to the client (it answers `input_required` instead).

A shared stdio backend speaks the legacy era unless it was probed into the modern one
(`translation`); this module holds the translations for modern clients of a legacy backend: the request ladder (envelope, headers, version), the removed
methods, the result fields the modern wire requires, and `server/discover` built from the cached
`initialize` result.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from moorage_proxyrunner.protocol.jsonrpc import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    MISSING_CLIENT_CAPABILITY,
    PARSE_ERROR,
    UNSUPPORTED_PROTOCOL_VERSION,
    Json,
)

HANDSHAKE_VERSIONS: Final = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
"""Revisions reached through `initialize`, oldest first."""
MODERN_VERSIONS: Final = ("2026-07-28",)
"""Revisions with the per-request envelope."""
LATEST_HANDSHAKE: Final = HANDSHAKE_VERSIONS[-1]
DEFAULT_NEGOTIATED: Final = "2025-03-26"
"""What a legacy request without `MCP-Protocol-Version` is assumed to speak (spec)."""

PROTOCOL_VERSION_KEY: Final = "io.modelcontextprotocol/protocolVersion"
CLIENT_INFO_KEY: Final = "io.modelcontextprotocol/clientInfo"
CLIENT_CAPABILITIES_KEY: Final = "io.modelcontextprotocol/clientCapabilities"
LOG_LEVEL_KEY: Final = "io.modelcontextprotocol/logLevel"
SERVER_INFO_KEY: Final = "io.modelcontextprotocol/serverInfo"
SUBSCRIPTION_ID_KEY: Final = "io.modelcontextprotocol/subscriptionId"
ENVELOPE_KEYS: Final = frozenset(
    {PROTOCOL_VERSION_KEY, CLIENT_INFO_KEY, CLIENT_CAPABILITIES_KEY, LOG_LEVEL_KEY}
)

PROTOCOL_VERSION_HEADER: Final = "mcp-protocol-version"
METHOD_HEADER: Final = "mcp-method"
NAME_HEADER: Final = "mcp-name"
SESSION_HEADER: Final = "mcp-session-id"
PARAM_HEADER_PREFIX: Final = "mcp-param-"
"""2026-07-28: a tool argument mirrored into a header (`Mcp-Param-<Name>`)."""
ROUTING_HEADERS: Final = frozenset({PROTOCOL_VERSION_HEADER, METHOD_HEADER, NAME_HEADER})

NAME_BEARING: Final[Mapping[str, str]] = {
    "tools/call": "name",
    "prompts/get": "name",
    "resources/read": "uri",
}
"""Method → the params key that `Mcp-Name` must mirror."""

REMOVED_IN_MODERN: Final = frozenset(
    {"initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"}
)
"""Requests the 2026-07-28 wire no longer has: answered 404 / -32601."""

LEGACY_CLIENT_NOTIFICATIONS: Final = frozenset(
    {
        "notifications/initialized",
        "notifications/cancelled",
        "notifications/progress",
        "notifications/roots/list_changed",
        "notifications/tasks/status",
    }
)
"""The notifications a client may send in the legacy era (the union over its revisions; the
2025-11-25 schema's `ClientNotification`). Anything else is refused: no notification acts on a
tool, prompt or resource, so none needs a policy decision, and one the protocol does not define
must not reach the server undecided."""
MODERN_CLIENT_NOTIFICATIONS: Final = frozenset({"notifications/cancelled"})
"""The 2026-07-28 schema's only `ClientNotification`."""

CACHEABLE: Final = frozenset(
    {"tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read"}
)
"""Methods whose modern results must carry `ttlMs` and `cacheScope`."""

INTERACTIVE: Final = frozenset(
    {"tools/call", "prompts/get", "resources/read", "completion/complete"}
)
"""Methods during which a server may ask the client something (sampling, elicitation, roots)."""

CAPABILITY_FOR_SERVER_REQUEST: Final[Mapping[str, str]] = {
    "sampling/createMessage": "sampling",
    "elicitation/create": "elicitation",
    "roots/list": "roots",
}

LOG_LEVELS: Final = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)
_LOG_RANK: Final = {level: rank for rank, level in enumerate(LOG_LEVELS)}

_ERROR_STATUS: Final[Mapping[int, int]] = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    MISSING_CLIENT_CAPABILITY: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
    METHOD_NOT_FOUND: 404,
}

_B64_SENTINEL = re.compile(r"^=\?base64\?(?P<payload>.*)\?=$")


def is_modern(version: str | None) -> bool:
    return version in MODERN_VERSIONS


def modern_status(code: int) -> int:
    """The HTTP status a modern-era JSON-RPC error travels with (200 for unlisted codes)."""
    return _ERROR_STATUS.get(code, 200)


def negotiate(requested: Any, backend_version: str) -> str:
    """The version to answer a client's `initialize` with, given what the backend agreed to.

    The backend was initialised once at its newest handshake version; a client asking for an
    older known revision gets that revision (the wire differences are additive), one asking for
    something newer or unknown gets the backend's.
    """
    if isinstance(requested, str) and requested in HANDSHAKE_VERSIONS:
        if backend_version not in HANDSHAKE_VERSIONS:
            return requested
        if HANDSHAKE_VERSIONS.index(requested) <= HANDSHAKE_VERSIONS.index(backend_version):
            return requested
    return backend_version


def log_rank(level: Any) -> int | None:
    return _LOG_RANK.get(level) if isinstance(level, str) else None


def is_logged(level: Any, threshold: str | None) -> bool:
    """Whether a `notifications/message` at `level` passes a client's `threshold`."""
    if threshold is None:
        return True
    rank = log_rank(level)
    return rank is None or rank >= _LOG_RANK.get(threshold, 0)


def decode_header_value(value: str | None) -> str | None:
    """An `Mcp-Name`/`Mcp-Param-*` value, with the `=?base64?…?=` form decoded (None if bad)."""
    if value is None:
        return None
    match = _B64_SENTINEL.fullmatch(value)
    if match is None:
        return value
    payload = match.group("payload")
    try:
        decoded = base64.b64decode(payload, validate=True)
        if base64.b64encode(decoded).decode("ascii") != payload:
            return None
        return decoded.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


@dataclass(frozen=True, slots=True)
class Envelope:
    """A modern request's per-request protocol fields, after the ladder accepted them."""

    protocol_version: str
    client_capabilities: Json
    client_info: Any
    log_level: str | None


@dataclass(frozen=True, slots=True)
class LadderRejection:
    code: int
    message: str
    data: Any = None


def duplicated_routing_header(names: Iterable[str]) -> str | None:
    """A routing header sent more than once (first-copy and last-copy readers would disagree)."""
    seen: set[str] = set()
    for name in names:
        key = name.lower()
        if key in ROUTING_HEADERS or key.startswith(PARAM_HEADER_PREFIX):
            if key in seen:
                return key
            seen.add(key)
    return None


def check_modern_request(body: Json, headers: Mapping[str, str]) -> Envelope | LadderRejection:
    """The modern request ladder, first failure wins: envelope, then headers, then version.

    `headers` are keyed by lower-case name. Order and codes follow the 2026-07-28 transport
    spec: a missing envelope key is -32602; headers that disagree with the body are -32020
    (checked before the version so a client that disagrees with itself is told so); a version
    we do not serve is -32022 naming the ones we do.
    """
    params = body.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    if not isinstance(meta, dict):
        return LadderRejection(
            INVALID_PARAMS,
            f"params._meta must be an object carrying {PROTOCOL_VERSION_KEY!r} and "
            f"{CLIENT_CAPABILITIES_KEY!r}",
        )
    missing = [k for k in (PROTOCOL_VERSION_KEY, CLIENT_CAPABILITIES_KEY) if k not in meta]
    if missing:
        return LadderRejection(
            INVALID_PARAMS, f"params._meta is missing the required key(s): {', '.join(missing)}"
        )
    version = meta[PROTOCOL_VERSION_KEY]
    mismatch = check_modern_headers(body, headers)
    if mismatch is not None:
        return mismatch
    if not isinstance(version, str):
        return LadderRejection(INVALID_PARAMS, "the protocol version must be a string")
    if version not in MODERN_VERSIONS:
        return unsupported_version(version)
    capabilities = meta[CLIENT_CAPABILITIES_KEY]
    if not isinstance(capabilities, dict):
        return LadderRejection(INVALID_PARAMS, "the client capabilities must be an object")
    level = meta.get(LOG_LEVEL_KEY)
    if level is not None and log_rank(level) is None:
        return LadderRejection(INVALID_PARAMS, f"unknown log level {level!r}")
    return Envelope(version, capabilities, meta.get(CLIENT_INFO_KEY), level)


def check_modern_headers(body: Json, headers: Mapping[str, str]) -> LadderRejection | None:
    """The header rung alone: `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` must say
    what the body says (-32020). An intermediary that reads the body must enforce this even
    when it forwards the request to a server that validates the rest. None also when the body
    has no envelope to compare with."""
    params = body.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    if not isinstance(meta, dict) or PROTOCOL_VERSION_KEY not in meta:
        return None  # the envelope rung (-32602) comes first; the server answers it
    version = meta[PROTOCOL_VERSION_KEY]
    header_version = headers.get(PROTOCOL_VERSION_HEADER)
    if header_version is None or header_version != version:
        return LadderRejection(
            HEADER_MISMATCH, "MCP-Protocol-Version does not match the request's protocol version"
        )
    method = body.get("method")
    if headers.get(METHOD_HEADER) != method:
        return LadderRejection(HEADER_MISMATCH, "Mcp-Method does not match the request's method")
    name_key = NAME_BEARING.get(method) if isinstance(method, str) else None
    if name_key is not None and isinstance(params, dict):
        value = params.get(name_key)
        if value is not None and decode_header_value(headers.get(NAME_HEADER)) != value:
            return LadderRejection(
                HEADER_MISMATCH, f"Mcp-Name does not match the request's {name_key!r}"
            )
    for header, (key, value) in mirrored_arguments(body, headers).items():
        text = header_text(value)
        if text is None or decode_header_value(headers[header]) != text:
            return LadderRejection(
                HEADER_MISMATCH, f"{header} does not match the argument {key[:64]!a}"
            )
    return None


def mirrored_arguments(body: Json, headers: Mapping[str, str]) -> dict[str, tuple[str, Any]]:
    """`Mcp-Param-<X>` headers (lower-case names) of a `tools/call` with the argument each
    mirrors: the one whose key is X, compared without case as header names are.

    A tool's schema may mirror an argument under another name (`x-mcp-header`); the proxy does
    not keep tools' schemas, so a header naming no argument is not forwarded (`param_headers`):
    a server must not read a value from a header that the body, which was authorised, does not
    state."""
    if body.get("method") != "tools/call":
        return {}
    params = body.get("params")
    arguments = params.get("arguments") if isinstance(params, dict) else None
    if not isinstance(arguments, dict):
        return {}
    mirrored: dict[str, tuple[str, Any]] = {}
    by_lower = None
    for header in headers:
        if not header.startswith(PARAM_HEADER_PREFIX):
            continue
        if by_lower is None:
            by_lower = {key.lower(): key for key in arguments}
        key = by_lower.get(header[len(PARAM_HEADER_PREFIX) :])
        if key is not None:
            mirrored[header] = (key, arguments[key])
    return mirrored


def header_text(value: Any) -> str | None:
    """An argument's value as an `Mcp-Param-*` header carries it; None for objects, arrays and
    null, which no header mirrors."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return None


def param_headers(body: Json, headers: Mapping[str, str]) -> dict[str, str]:
    """The `Mcp-Param-*` headers to forward with a modern request (`headers` as sent): those
    mirroring an argument of the body and equal to it. `check_modern_headers` has refused a
    request whose headers differ; this holds on its own too (a body without the envelope is
    not checked there, and goes on to a server that refuses it)."""
    lowered = {
        name.lower(): name for name in headers if name.lower().startswith(PARAM_HEADER_PREFIX)
    }
    if not lowered:
        return {}
    sent = {name: headers[original] for name, original in lowered.items()}
    return {
        lowered[name]: sent[name]
        for name, (_, value) in mirrored_arguments(body, sent).items()
        if (text := header_text(value)) is not None and decode_header_value(sent[name]) == text
    }


def notification_refusal(method: str, *, modern: bool) -> LadderRejection | None:
    """The -32601 error (HTTP 400) for a notification clients do not send; None to let it in."""
    allowed = MODERN_CLIENT_NOTIFICATIONS if modern else LEGACY_CLIENT_NOTIFICATIONS
    if method in allowed:
        return None
    era = "2026-07-28" if modern else "this protocol version"
    return LadderRejection(
        METHOD_NOT_FOUND,
        f"{method[:100]!a} is not a notification a client may send in {era}; "
        f"send a request (with an id), or one of: {', '.join(sorted(allowed))}",
    )


def unsupported_version(requested: str) -> LadderRejection:
    return LadderRejection(
        UNSUPPORTED_PROTOCOL_VERSION,
        "Unsupported protocol version",
        {"supported": list(MODERN_VERSIONS), "requested": requested},
    )


def strip_envelope(params: Json) -> None:
    """Remove the modern `_meta` keys in place before a request goes to a legacy backend.

    A dual-era server that was initialised refuses requests carrying them; `progressToken`
    and any other `_meta` stay.
    """
    meta = params.get("_meta")
    if isinstance(meta, dict):
        for key in ENVELOPE_KEYS.intersection(meta):
            del meta[key]
        if not meta:
            del params["_meta"]


def modern_result(method: str, result: Json, server_info: Json | None) -> Json:
    """Complete a legacy backend's result for a modern client (in place; returned for chaining).

    Modern results carry `resultType`; cacheable ones `ttlMs` and `cacheScope` (we say
    "private" and 0: the proxy's authorisation may tailor lists per caller, so nothing may be
    shared or kept); every result should name the server in `_meta`.
    """
    result.setdefault("resultType", "complete")
    if method in CACHEABLE:
        result.setdefault("ttlMs", 0)
        result.setdefault("cacheScope", "private")
    if server_info is not None:
        meta = result.get("_meta")
        if not isinstance(meta, dict):
            meta = result["_meta"] = {}
        meta.setdefault(SERVER_INFO_KEY, server_info)
    return result


def modern_capabilities(capabilities: Json) -> Json:
    """A legacy server's capabilities as a modern `server/discover` states them.

    List-changed and resource updates reach modern clients through `subscriptions/listen`,
    which the proxy serves from the legacy notifications, so the flags carry over.
    """
    return {k: v for k, v in capabilities.items() if isinstance(v, dict)}


def discover_result(initialize_result: Json) -> Json:
    """`server/discover` answered from the backend's cached `initialize` result."""
    result: Json = {
        "supportedVersions": list(MODERN_VERSIONS),
        "capabilities": modern_capabilities(initialize_result.get("capabilities") or {}),
        "resultType": "complete",
        "ttlMs": 0,
        "cacheScope": "public",
    }
    instructions = initialize_result.get("instructions")
    if isinstance(instructions, str):
        result["instructions"] = instructions
    server_info = initialize_result.get("serverInfo")
    if isinstance(server_info, dict):
        result["_meta"] = {SERVER_INFO_KEY: server_info}
    return result


def initialize_result_for(cached: Json, requested_version: Any) -> Json:
    """The cached `initialize` result, with the version negotiated for this client."""
    result = dict(cached)
    result["protocolVersion"] = negotiate(requested_version, str(cached.get("protocolVersion", "")))
    return result


def has_capability(capabilities: Any, name: str) -> bool:
    return isinstance(capabilities, dict) and isinstance(capabilities.get(name), dict)


def missing_capability_error(name: str) -> tuple[int, str, Json]:
    """The -32021 error a modern client gets when the server needs `name` from it."""
    return (
        MISSING_CLIENT_CAPABILITY,
        f"The server needs the client capability {name!r}, which this request did not declare",
        {"requiredCapabilities": {name: {}}},
    )
