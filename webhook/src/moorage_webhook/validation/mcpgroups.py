"""Rules for MCPGroup beyond its CRD schema.

Pure: no I/O. A group holds only a description; membership is declared by the members
(`spec.groupRef`), so the one rule here is about that description: it is shown by `kubectl` and
in the operator's messages, so it must be one line of printable text.
"""

from __future__ import annotations

from typing import Any

from moorage_api.mcpgroup import MCPGroup
from moorage_webhook.validation.objects import validate_object
from moorage_webhook.validation.verdict import Findings, Verdict


def mcpgroup_rules(new: MCPGroup, old: MCPGroup | None, raw: dict[str, Any], out: Findings) -> None:
    """Every MCPGroup rule of this module."""
    description = new.spec.description
    if description is not None and not description.isprintable():
        out.error(
            "spec.description",
            "must be one line of printable text (no line breaks or control characters)",
        )


def validate_mcpgroup(new: dict[str, Any], *, old: dict[str, Any] | None = None) -> Verdict:
    """Validate an MCPGroup for admission; `old` is the stored object on an update."""
    return validate_object(new, old=old, model=MCPGroup, rules=mcpgroup_rules)
