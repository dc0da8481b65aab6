"""The tool filter/override rules (spec §2.2): which tools clients see, and under what name.

Pure: no I/O. A `ToolPolicy` is part of the proxy's settings (the initial policy) and of each
live RunConfig; the pipeline step that applies it is `moorage_proxyrunner.policy.toolfilter`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from moorage_proxyrunner.protocol.jsonrpc import Json


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
            if self.server_name(name) != server_name:
                # Hidden, or shadowed by another tool renamed to this name: not callable by it.
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


class OverrideLike(Protocol):
    """A RunConfig's tool override (`RunConfigToolOverride`), as far as it is read here."""

    @property
    def name(self) -> str | None: ...

    @property
    def description(self) -> str | None: ...


def build_tool_policy(
    tools_filter: Iterable[str], tools_override: Mapping[str, OverrideLike]
) -> ToolPolicy:
    """The policy of a RunConfig's (or an aggregated backend's) `tools_filter` and
    `tools_override`."""
    return ToolPolicy(
        allowed=frozenset(tools_filter),
        overrides={
            server_name: ToolOverride(name=o.name, description=o.description)
            for server_name, o in tools_override.items()
        },
    )
