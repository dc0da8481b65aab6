"""Finalizers that keep an object while others still depend on it, as pure decisions.

An MCPToolConfig is kept while MCPServers reference it, an MCPGroup while it has members. The
finalizer is on every such object that is not being deleted; once deletion is requested it stays
while anything depends on the object and is removed when nothing does.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

MAX_LISTED: Final = 20
"""Names listed in a condition message before "and N more"."""


@dataclass(frozen=True, slots=True)
class FinalizerAction:
    """What to do with a protection finalizer."""

    add: bool = False
    remove: bool = False


def describe_referrers(referrers: Sequence[str]) -> str:
    """The names, sorted, the first `MAX_LISTED` of them listed."""
    names = sorted(referrers)
    listed = ", ".join(names[:MAX_LISTED])
    if len(names) > MAX_LISTED:
        listed += f" and {len(names) - MAX_LISTED} more"
    return listed


def is_deleting(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def has_finalizer(obj: Mapping[str, Any], finalizer: str) -> bool:
    return finalizer in ((obj.get("metadata") or {}).get("finalizers") or [])


def protection_action(
    obj: Mapping[str, Any], *, finalizer: str, dependents: Sequence[object]
) -> FinalizerAction:
    """Add `finalizer` to a live object; remove it from a deleted one nothing depends on."""
    present = has_finalizer(obj, finalizer)
    if not is_deleting(obj):
        return FinalizerAction(add=not present)
    return FinalizerAction(remove=present and not dependents)
