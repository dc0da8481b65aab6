"""Tool filter and override (spec §2.2, §4.4): which tools clients see, and under what name.

Pure rules (`ToolPolicy`) plus the pipeline step that applies them. `tools/list` shows only
allowed tools, renamed and re-described; `tools/call` maps a client-facing name back to the
server's. A hidden tool must be indistinguishable from a nonexistent one, so while a policy is
active every name a client cannot see (hidden, or the old name of a renamed tool, or simply
unknown) gets the same answer from the proxy without reaching the server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from moorage_proxyrunner.jsonrpc import INVALID_PARAMS, Json, error_response
from moorage_proxyrunner.pipeline import CallNext, McpCall, Reply


@dataclass(frozen=True, slots=True)
class ToolOverride:
    """A new client-facing name and/or description for one server tool."""

    name: str | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class ToolPolicy:
    """`allowed`: client-facing names to expose (empty: all). `overrides`: by server name."""

    allowed: frozenset[str] = frozenset()
    overrides: Mapping[str, ToolOverride] = field(default_factory=dict)

    @property
    def is_active(self) -> bool:
        return bool(self.allowed or self.overrides)

    def client_name(self, server_name: str) -> str:
        override = self.overrides.get(server_name)
        return override.name if override is not None and override.name else server_name

    def is_visible(self, client_name: str) -> bool:
        return not self.allowed or client_name in self.allowed

    def server_name(self, client_name: str, known: Iterable[str] | None = None) -> str | None:
        """The server's name for a client-facing name, or None when clients cannot see it."""
        if not self.is_visible(client_name):
            return None
        for server, override in self.overrides.items():
            if override.name == client_name:
                return server
        renamed_away = self.overrides.get(client_name)
        if renamed_away is not None and renamed_away.name and renamed_away.name != client_name:
            return None
        return client_name

    def present(self, tools: list[Json]) -> list[Json]:
        """Filter and rewrite a `tools/list` page."""
        shown: list[Json] = []
        for tool in tools:
            server_name = tool.get("name")
            if not isinstance(server_name, str):
                continue
            name = self.client_name(server_name)
            if not self.is_visible(name):
                continue
            override = self.overrides.get(server_name)
            if override is None:
                shown.append(tool)
                continue
            rewritten = dict(tool)
            rewritten["name"] = name
            if override.description is not None:
                rewritten["description"] = override.description
            shown.append(rewritten)
        return shown


def unknown_tool_error(call: McpCall, name: object) -> Json:
    return error_response(call.id, INVALID_PARAMS, f"Unknown tool: {name}")


class ToolFilterStep:
    """Applies the current `ToolPolicy` (replaced live when the RunConfig changes)."""

    def __init__(self, policy: ToolPolicy) -> None:
        self.policy = policy

    async def __call__(self, call: McpCall, call_next: CallNext) -> Reply:
        policy = self.policy
        if not policy.is_active:
            return await call_next(call)
        if call.method == "tools/list":
            reply = await call_next(call.wanting_result())
            result = (reply.message or {}).get("result")
            if isinstance(result, dict) and isinstance(result.get("tools"), list):
                result["tools"] = policy.present(result["tools"])
            return reply
        if call.method == "tools/call":
            params = call.params
            name = params.get("name")
            server_name = policy.server_name(name) if isinstance(name, str) else None
            if server_name is None:
                return Reply(unknown_tool_error(call, name), status=200)
            if server_name != name:
                rewritten = dict(params)
                rewritten["name"] = server_name
                call = call.with_params(rewritten)
        return await call_next(call)
