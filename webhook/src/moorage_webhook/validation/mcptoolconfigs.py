"""Rules for MCPToolConfig that its CRD schema cannot state (spec §2.2, §5).

Pure: no I/O. The webhook does not know the server's tool list, only the names an MCPToolConfig
mentions, and reasons about those:

- two overrides may not rename to the same name, and an override may not rename to the name of a
  tool that keeps its own name (an override key without a new name) — clients would see two tools
  under one name and the proxy could not map calls back;
- `toolsFilter` matches the names clients see, after renaming: listing a tool's old name when it
  is renamed, or renaming a tool to a name the filter does not list, hides it (warnings);
- names a client may refuse (outside `A-Za-z0-9_-.`, longer than 128) get a warning.
"""

from __future__ import annotations

import re
from typing import Any, Final

from moorage_api.mcptoolconfig import MCPToolConfig
from moorage_webhook.validation.objects import validate_object
from moorage_webhook.validation.verdict import Findings, Verdict, key_path, quoted

_TOOL_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,128}", re.ASCII)


def _name_warning(name: str) -> str | None:
    if _TOOL_NAME.fullmatch(name) is None:
        return (
            f"{quoted(name)} is not a portable MCP tool name (1-128 of A-Z a-z 0-9 _ - .); "
            "some clients reject it"
        )
    return None


def mcptoolconfig_rules(
    new: MCPToolConfig, old: MCPToolConfig | None, raw: dict[str, Any], out: Findings
) -> None:
    """Every MCPToolConfig rule of this module."""
    overrides = new.spec.tools_override
    tools_filter = new.spec.tools_filter
    renames: dict[str, str] = {}
    keeps_name: set[str] = set()
    # Sorted: the apiserver re-orders map keys, and messages must not depend on the order.
    for original, override in sorted(overrides.items()):
        path = key_path("spec.toolsOverride", original)
        if not original.strip():
            out.error(path, "the tool name (the key) must not be empty")
            continue
        if override.name is None:
            keeps_name.add(original)
        elif override.name == original:
            keeps_name.add(original)
            out.warn(f"{path}.name", "renames the tool to the name it already has")
        else:
            renames[original] = override.name
    claimed: dict[str, str] = {}
    for original, new_name in renames.items():
        path = f"{key_path('spec.toolsOverride', original)}.name"
        if not new_name.strip():
            out.error(path, "must not be blank")
            continue
        if new_name in keeps_name:
            out.error(
                path,
                f"{quoted(new_name)} collides with tool {quoted(new_name)}, which keeps its name; "
                "rename that tool too or choose another name",
            )
        elif new_name in claimed:
            out.error(
                path,
                f"{quoted(new_name)} is also the new name of tool {quoted(claimed[new_name])}; clients "
                "would see two tools with one name",
            )
        else:
            claimed[new_name] = original
            if (why := _name_warning(new_name)) is not None:
                out.warn(path, why)
            if tools_filter and new_name not in tools_filter:
                out.warn(
                    path,
                    f"{quoted(new_name)} is not in spec.toolsFilter, so the renamed tool is hidden",
                )
    for index, entry in enumerate(tools_filter):
        path = f"spec.toolsFilter[{index}]"
        if not entry.strip():
            out.error(path, "a tool name must not be blank")
        elif entry in renames and entry not in claimed:
            out.warn(
                path,
                f"tool {quoted(entry)} is renamed to {quoted(renames[entry])}; the filter matches the names "
                f"clients see, so list {quoted(renames[entry])}",
            )


def validate_mcptoolconfig(new: dict[str, Any], *, old: dict[str, Any] | None = None) -> Verdict:
    """Validate an MCPToolConfig for admission; `old` is the stored object on an update."""
    return validate_object(new, old=old, model=MCPToolConfig, rules=mcptoolconfig_rules)
