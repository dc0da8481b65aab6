"""Translations between a 2026-07-28 (modern-era) stdio backend and handshake-era clients.

Pure: no I/O. A dual-era server locks to the era of its first message, so a shared backend
that is probed with `server/discover` and answers it runs in the modern era; handshake-era
clients are then served by translation:

- the probe's answer decides the era (`era_of_probe`): a discover result naming 2026-07-28 is
  modern; a refusal (-32601, -32600) or anything else keeps the handshake era;
- their `initialize` is answered from the `server/discover` result (`initialize_from_discover`);
- each request carries the modern envelope in `_meta`, with the session's `logging/setLevel` as
  its log level (`with_envelope`);
- a server's `input_required` becomes the handshake-era server requests (`server_requests`),
  and the client's answers go back under the server's own keys (`input_responses`);
- modern-only result fields are taken off before the result reaches the client
  (`handshake_result`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from moorage_proxyrunner.protocol import eras
from moorage_proxyrunner.protocol.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    Json,
)

Era = Literal["modern", "handshake"]

LEGACY_REFUSALS: Final = frozenset({METHOD_NOT_FOUND, INVALID_REQUEST})
"""How a handshake-only server refuses `server/discover` before `initialize`."""
MODERN_RESULT_FIELDS: Final = frozenset({"resultType", "ttlMs", "cacheScope"})


def discover_params(capabilities: Json, client_info: Json) -> Json:
    """The params of the probe sent to a fresh backend before anything else."""
    return {
        "_meta": {
            eras.PROTOCOL_VERSION_KEY: eras.MODERN_VERSIONS[-1],
            eras.CLIENT_CAPABILITIES_KEY: capabilities,
            eras.CLIENT_INFO_KEY: client_info,
        }
    }


def era_of_probe(reply: Json) -> Era:
    """The era to run the backend in, from its answer to the probe (`discover_params`)."""
    result = reply.get("result")
    if isinstance(result, dict):
        supported = result.get("supportedVersions")
        if isinstance(supported, list) and any(v in eras.MODERN_VERSIONS for v in supported):
            return "modern"
    return "handshake"


def initialize_from_discover(discover: Json, requested_version: Any) -> Json:
    """A handshake-era client's `initialize` result, from the backend's discover result."""
    capabilities = discover.get("capabilities")
    result: Json = {
        "protocolVersion": eras.negotiate(requested_version, eras.LATEST_HANDSHAKE),
        "capabilities": dict(capabilities) if isinstance(capabilities, dict) else {},
    }
    meta = discover.get("_meta")
    server_info = meta.get(eras.SERVER_INFO_KEY) if isinstance(meta, dict) else None
    result["serverInfo"] = (
        server_info if isinstance(server_info, dict) else {"name": "unknown", "version": "0"}
    )
    instructions = discover.get("instructions")
    if isinstance(instructions, str):
        result["instructions"] = instructions
    return result


def with_envelope(
    params: Json, *, capabilities: Json, client_info: Any, log_level: str | None
) -> Json:
    """`params` of a handshake-era client's request, with the modern envelope the backend
    needs (in place; returned for chaining). The session's log level becomes the request's."""
    meta = params.get("_meta")
    if not isinstance(meta, dict):
        meta = params["_meta"] = {}
    meta[eras.PROTOCOL_VERSION_KEY] = eras.MODERN_VERSIONS[-1]
    meta[eras.CLIENT_CAPABILITIES_KEY] = capabilities
    if client_info is not None:
        meta[eras.CLIENT_INFO_KEY] = client_info
    if log_level is not None:
        meta[eras.LOG_LEVEL_KEY] = log_level
    else:
        meta.pop(eras.LOG_LEVEL_KEY, None)
    return params


@dataclass(frozen=True, slots=True)
class ServerRequest:
    """One input request, as the handshake-era request a client is sent."""

    key: str
    """The server's name for it, under which the answer goes back."""
    method: str
    params: Json


@dataclass(frozen=True, slots=True)
class Untranslatable:
    """An `input_required` result that no handshake-era request can carry."""

    message: str
    code: int = INTERNAL_ERROR


def server_requests(result: Json) -> list[ServerRequest] | Untranslatable:
    """The handshake-era requests asking what an `input_required` result asks."""
    requests = result.get("inputRequests")
    if requests is None:
        return []
    if not isinstance(requests, dict):
        return Untranslatable("The server's inputRequests is not an object")
    out: list[ServerRequest] = []
    for key, request in requests.items():
        method = request.get("method") if isinstance(request, dict) else None
        if not isinstance(method, str) or method not in eras.CAPABILITY_FOR_SERVER_REQUEST:
            return Untranslatable(
                f"The server asked for input {key[:64]!a} with {str(method)[:64]!a}, "
                "which a client of this protocol version cannot be asked"
            )
        params = request.get("params")
        out.append(ServerRequest(key, method, dict(params) if isinstance(params, dict) else {}))
    return out


def input_responses(asked: list[ServerRequest], answers: Mapping[str, Any]) -> Json:
    """The retry's `inputResponses`: each answer under the server's key for what it asked.

    An answer to something the server did not ask is left out (the server would ignore it)."""
    return {request.key: answers[request.key] for request in asked if request.key in answers}


def retry_params(params: Json, responses: Json, server_state: str | None) -> Json:
    """The retried request's params: the original ones with the answers and the server's own
    state (and nothing left over from an earlier round)."""
    retried = dict(params)
    retried["inputResponses"] = responses
    if server_state is None:
        retried.pop("requestState", None)
    else:
        retried["requestState"] = server_state
    return retried


LIST_CHANGED_FLAGS: Final = (
    ("toolsListChanged", "tools"),
    ("promptsListChanged", "prompts"),
    ("resourcesListChanged", "resources"),
)
"""Each `subscriptions/listen` flag and the capability whose `listChanged` it needs."""


def listen_notifications(capabilities: Json, uris: Iterable[str]) -> Json:
    """What the proxy's own listen stream asks a modern-era backend for: every list change
    the server announces and updates of the resources clients hold ({}: nothing to ask)."""
    wanted: Json = {
        flag: True
        for flag, capability in LIST_CHANGED_FLAGS
        if eras.has_capability(capabilities, capability)
        and capabilities[capability].get("listChanged") is True
    }
    held = sorted(uris)
    resources = capabilities.get("resources")
    if held and isinstance(resources, dict) and resources.get("subscribe") is True:
        wanted["resourceSubscriptions"] = held
    return wanted


def drop_subscription_id(params: Json) -> None:
    """Take the backend's listen subscription id off a notification (in place)."""
    meta = params.get("_meta")
    if isinstance(meta, dict) and eras.SUBSCRIPTION_ID_KEY in meta:
        del meta[eras.SUBSCRIPTION_ID_KEY]
        if not meta:
            del params["_meta"]


def handshake_result(result: Json) -> Json:
    """A modern backend's result as a handshake-era server would give it (in place)."""
    for key in MODERN_RESULT_FIELDS.intersection(result):
        del result[key]
    meta = result.get("_meta")
    if isinstance(meta, dict):
        meta.pop(eras.SERVER_INFO_KEY, None)
        if not meta:
            del result["_meta"]
    return result
