"""The aggregator's health report and the VirtualMCPServer status patch made from it.

Pure: no I/O. The report has exactly the two fields agreed with the operator, which derives
the rest of the status (`discoveredBackends`, conditions) from them:

- `status.backendHealth`: `[{name, healthy, toolCount, message, checkedAt}]` per backend, in
  the configured order; `healthy` is null until the first check; the message of a healthy
  backend names its names shadowed by a backend of higher priority, if any;
- `status.unresolvedConflicts`: `[{name, backends}]`, one per exposed name the strategy left
  unresolved (tools and prompts; `manual` leaves those names out until the map names them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from moorage_proxyrunner.protocol.aggregation import Merge


@dataclass(frozen=True, slots=True)
class BackendHealth:
    name: str
    healthy: bool | None
    tool_count: int
    message: str
    checked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Report:
    backend_health: tuple[BackendHealth, ...]
    unresolved: tuple[tuple[str, tuple[str, ...]], ...]

    def same_as(self, other: Report | None) -> bool:
        """Equal but for the times of the checks: nothing worth writing has changed."""
        if other is None:
            return False
        return self.unresolved == other.unresolved and [
            (h.name, h.healthy, h.tool_count, h.message) for h in self.backend_health
        ] == [(h.name, h.healthy, h.tool_count, h.message) for h in other.backend_health]


def shadowed_messages(merges: Mapping[str, Merge]) -> dict[str, str]:
    """Backend → a sentence naming its names hidden by other backends."""
    hidden: dict[str, list[str]] = {}
    for kind, merge in merges.items():
        for item in merge.shadowed:
            hidden.setdefault(item.owner.backend, []).append(
                f"{kind[:-1] if kind.endswith('s') else kind} {item.owner.name!r} (by {item.by})"
            )
    return {backend: "shadowed: " + ", ".join(names) for backend, names in hidden.items()}


def build_report(healths: Sequence[BackendHealth], merges: Mapping[str, Merge]) -> Report:
    shadowed = shadowed_messages(merges)
    with_shadowed = tuple(
        BackendHealth(
            h.name,
            h.healthy,
            h.tool_count,
            shadowed.get(h.name, h.message) if h.healthy and not h.message else h.message,
            h.checked_at,
        )
        for h in healths
    )
    unresolved = tuple(
        (conflict.name, tuple(dict.fromkeys(o.backend for o in conflict.owners)))
        for kind in ("tools", "prompts")
        if kind in merges
        for conflict in merges[kind].unresolved
    )
    return Report(with_shadowed, unresolved)


def status_patch(report: Report) -> dict[str, Any]:
    """The JSON merge patch of the VirtualMCPServer's status."""
    return {
        "status": {
            "backendHealth": [
                {
                    "name": h.name,
                    "healthy": h.healthy,
                    "toolCount": h.tool_count,
                    "message": h.message,
                    "checkedAt": (
                        h.checked_at.strftime("%Y-%m-%dT%H:%M:%SZ") if h.checked_at else None
                    ),
                }
                for h in report.backend_health
            ],
            "unresolvedConflicts": [
                {"name": name, "backends": list(backends)} for name, backends in report.unresolved
            ],
        }
    }
