"""The members a client's message may have, and how they must be spelt.

Pure: no I/O. The proxy authorises, audits and forwards its own reading of a message, and reads
members by their exact names. A server may read them another way: Go's `encoding/json` matches
object keys to struct fields case-insensitively (Unicode simple folding), so for it `"Name"` or
`"METHOD"` is `name` or `method`. A key the proxy does not read but such a server does would let
a client say one thing to the proxy and another to the server. So, in a client's message:

- the JSON-RPC envelope is a closed set (`ENVELOPE_MEMBERS`): a request or notification has
  `jsonrpc`, `method`, `params` and (a request) `id`; a response `jsonrpc`, `id` and exactly one
  of `result` and `error`. Any other top-level key is refused.
- in the objects the protocol defines (`PROTOCOL_OBJECTS`: the envelope, `params`, its `_meta`,
  `ref`, `argument`, `context`, `clientInfo`, `capabilities`, `notifications`, and a response's
  `result`, its `_meta`, and `error`), a key that casefolds to a member name of the MCP schema
  (`MEMBER_NAMES`, both eras) but is not spelt exactly so is refused. Tool arguments are the
  tool's own, not the protocol's: the authorisation policies decide which of their keys must be
  spelt exactly (`authz.misspelt_argument`).

`casefold` equates at least what Go's simple folding equates, so nothing Go reads as a member
gets past; a few more keys are refused (ß next to ss), which is the safe side.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

ENVELOPE_MEMBERS: Final = frozenset({"jsonrpc", "id", "method", "params", "result", "error"})
"""Every top-level key a JSON-RPC 2.0 message may carry."""

MEMBER_NAMES: Final = frozenset(
    {
        # JSON-RPC and the modern per-request envelope
        "jsonrpc", "id", "method", "params", "result", "error", "code", "message", "data",
        "io.modelcontextprotocol/protocolVersion", "io.modelcontextprotocol/clientInfo",
        "io.modelcontextprotocol/clientCapabilities", "io.modelcontextprotocol/logLevel",
        "io.modelcontextprotocol/serverInfo", "io.modelcontextprotocol/subscriptionId",
        # every property of the MCP schema's objects (2024-11-05 … 2026-07-28)
        "_meta", "action", "annotations", "argument", "arguments", "audience", "blob",
        "cacheScope", "call", "cancel", "capabilities", "clientInfo", "completion",
        "completions", "content", "contents", "context", "costPriority", "create",
        "createMessage", "createdAt", "cursor", "description", "destructiveHint",
        "elicitation", "elicitationId", "elicitations", "execution", "experimental",
        "extensions", "form", "hasMore", "hints", "icons", "idempotentHint", "includeContext",
        "input", "inputRequests", "inputResponses", "inputSchema", "instructions",
        "intelligencePriority", "isError", "lastModified", "lastUpdatedAt", "level", "list",
        "listChanged", "logger", "logging", "maxTokens", "messages", "metadata", "mimeType",
        "mode", "model", "modelPreferences", "name", "nextCursor", "notifications",
        "openWorldHint", "outputSchema", "pollInterval", "priority", "progress",
        "progressToken", "prompts", "promptsListChanged", "protocolVersion", "readOnlyHint",
        "reason", "ref", "requestId", "requestState", "requested", "requestedSchema",
        "requests", "required", "requiredCapabilities", "resource", "resourceSubscriptions",
        "resourceTemplates", "resources", "resourcesListChanged", "resultType", "role",
        "roots", "sampling", "serverInfo", "size", "sizes", "speedPriority", "src", "status",
        "statusMessage", "stopReason", "stopSequences", "structuredContent", "subscribe",
        "supported", "supportedVersions", "systemPrompt", "task", "taskId", "taskSupport",
        "tasks", "temperature", "text", "theme", "title", "toolChoice", "toolUseId", "tools",
        "toolsListChanged", "total", "ttl", "ttlMs", "type", "uri", "uriTemplate", "url",
        "value", "values", "version", "websiteUrl",
    }
)  # fmt: skip
"""Member names of the MCP schema, for both eras (a unit test holds this to the `mcp` package's
types). Keys spelt exactly so pass; keys that only fold to one are refused."""

_BY_FOLDED: Final[Mapping[str, str]] = {name.casefold(): name for name in MEMBER_NAMES}

PROTOCOL_OBJECTS: Final[Mapping[str, Mapping[str, Any]]] = {
    "params": {
        "_meta": {},
        "ref": {},
        "argument": {},
        "context": {},
        "clientInfo": {},
        "capabilities": {"roots": {}, "sampling": {}, "elicitation": {}, "tasks": {}},
        "notifications": {},
    },
    "result": {"_meta": {}},
    "error": {},
}
"""The objects below the envelope whose keys are the protocol's (a tree: member → its own
protocol objects). Others (tool arguments, `experimental`, content) hold data the protocol does
not name."""


@dataclass(frozen=True, slots=True)
class Misspelt:
    """A key in a protocol object that folds to the member `expected` but is spelt otherwise.

    `path`: where the object is, as `params._meta` (empty: the envelope itself)."""

    path: str
    key: str
    expected: str

    def describe(self) -> str:
        where = f"in {self.path}" if self.path else "at the top level"
        return (
            f"The key {self.key[:64]!a} {where} differs only in case from the MCP member "
            f"{self.expected!r}; spell it {self.expected!r}"
        )


def foreign_envelope_key(body: Mapping[str, Any]) -> str | None:
    """A top-level key outside `ENVELOPE_MEMBERS`, or None."""
    if len(body) <= 4 and body.keys() <= ENVELOPE_MEMBERS:
        return None  # the usual message: nothing to look at key by key
    for key in body:
        if key not in ENVELOPE_MEMBERS:
            return key
    return None


def misspelt_member(body: Mapping[str, Any]) -> Misspelt | None:
    """The first misspelt member in `body`'s protocol objects (see the module docstring)."""
    # A loop over an explicit stack: this runs on every client message.
    stack: list[tuple[str, Mapping[str, Any], Mapping[str, Mapping[str, Any]]]] = [
        ("", body, PROTOCOL_OBJECTS)
    ]
    while stack:
        path, obj, tree = stack.pop()
        for key in obj:
            if key in MEMBER_NAMES:
                continue
            expected = _BY_FOLDED.get(key.casefold())
            if expected is not None:
                return Misspelt(path, key, expected)
        for member, below in tree.items():
            child = obj.get(member)
            if isinstance(child, dict):
                stack.append((f"{path}.{member}" if path else member, child, below))
    return None
