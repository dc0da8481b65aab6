"""An MCPToolConfig's status and deletion protection (spec §2.2), as pure decisions.

- `status.configHash`: `compute_config_hash(spec)`, the same hash the referring MCPServers report
  as `status.toolConfigHash`, so one can see which servers run the current version.
- `Valid`: the spec parses and no two tools are renamed to the same name.
- The finalizer `moorage.dev/toolconfig-protection` is on every MCPToolConfig that is not being
  deleted. Once deletion is requested, it stays while any MCPServer in the namespace references
  the config (`DeletionBlocked=True` lists them) and is removed when none does.

Pure: no I/O. The reconciler supplies the referring MCPServers' names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from pydantic import ValidationError

from moorage_api.base import find_duplicates, validation_messages
from moorage_api.constants import FINALIZER_TOOLCONFIG_PROTECTION
from moorage_api.mcptoolconfig import (
    MCPToolConfigConditionType,
    MCPToolConfigSpec,
    parse_mcptoolconfig,
)
from moorage_operator.planning.conditions import ConditionSpec, merge_conditions
from moorage_operator.planning.finalizers import (
    FinalizerAction,
    describe_referrers,
    is_deleting,
    protection_action,
)
from moorage_operator.planning.mcpservers.references import compute_config_hash

JsonObject = dict[str, Any]

__all__ = [
    "STATUS_FIELDS",
    "FinalizerAction",
    "compute_toolconfig_status",
    "describe_referrers",
    "finalizer_action",
    "spec_problem",
]

STATUS_FIELDS: Final = ("observedGeneration", "configHash", "conditions")


def spec_problem(obj: Mapping[str, Any]) -> tuple[MCPToolConfigSpec | None, str | None]:
    """The parsed spec, or the reason it is not valid."""
    try:
        spec = parse_mcptoolconfig(dict(obj)).spec
    except ValidationError as exc:
        return None, "; ".join(validation_messages(exc))
    # Names clients would see for the tools the config mentions; a tool renamed onto another
    # mentioned tool's name (or two renamed alike) could not be told apart.
    duplicates = find_duplicates([o.name or tool for tool, o in spec.tools_override.items()])
    if duplicates:
        return None, (
            "spec.toolsOverride: several tools would be named "
            + ", ".join(f'"{name}"' for name in duplicates)
        )
    return spec, None


def finalizer_action(obj: Mapping[str, Any], *, referrers: Sequence[str]) -> FinalizerAction:
    """Add the finalizer to a live config; remove it from a deleted one nobody references."""
    return protection_action(obj, finalizer=FINALIZER_TOOLCONFIG_PROTECTION, dependents=referrers)


def compute_toolconfig_status(
    obj: Mapping[str, Any],
    *,
    referrers: Sequence[str],
    previous: Mapping[str, Any],
    now: str,
) -> JsonObject:
    """The whole status to store (wire form)."""
    meta = obj.get("metadata") or {}
    generation = meta.get("generation")
    spec, problem = spec_problem(obj)
    if spec is None:
        valid = ConditionSpec(
            MCPToolConfigConditionType.VALID,
            "False",
            "Invalid",
            f"Invalid MCPToolConfig: {problem}",
        )
    else:
        valid = ConditionSpec(
            MCPToolConfigConditionType.VALID, "True", "Valid", "The tool configuration is valid"
        )
    if is_deleting(obj) and referrers:
        blocked = ConditionSpec(
            MCPToolConfigConditionType.DELETION_BLOCKED,
            "True",
            "ReferencedByMCPServers",
            f"Deletion is blocked: referenced by MCPServers {describe_referrers(referrers)}",
        )
    elif referrers:
        blocked = ConditionSpec(
            MCPToolConfigConditionType.DELETION_BLOCKED,
            "False",
            "NotDeleting",
            f"Referenced by MCPServers {describe_referrers(referrers)}",
        )
    else:
        blocked = ConditionSpec(
            MCPToolConfigConditionType.DELETION_BLOCKED,
            "False",
            "NotReferenced",
            "No MCPServer references this MCPToolConfig",
        )
    status: JsonObject = {
        "conditions": merge_conditions(
            previous.get("conditions") or [],
            [valid, blocked],
            generation=generation if isinstance(generation, int) else None,
            now=now,
        )
    }
    if isinstance(generation, int):
        status["observedGeneration"] = generation
    if spec is not None:
        status["configHash"] = compute_config_hash(spec)
    return status
