"""An MCPGroup's members, status and deletion protection, as pure decisions.

MCPServers and MCPRemoteProxies join a group of their namespace through `spec.groupRef.name`.

- `status.members`: every member as `{kind, name, phase}`, sorted by kind then name, with
  `serverCount`, `remoteProxyCount` and `memberCount`.
- `phase`: `Ready`, or `Terminating` once deletion was requested.
- The finalizer `moorage.dev/group-members` is on every group that is not being deleted. Once
  deletion is requested it stays while any member remains (`DeletionBlocked=True` names them)
  and is removed when none does.

Pure: no I/O. The reconciler supplies the members from its caches (a cache index by group).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from moorage_api.constants import GROUP, KIND_MCPSERVER
from moorage_api.references import GroupRef
from moorage_operator.planning.conditions import ConditionSpec, merge_conditions
from moorage_operator.planning.finalizers import (
    FinalizerAction,
    describe_referrers,
    is_deleting,
    protection_action,
)

JsonObject = dict[str, Any]

FINALIZER_GROUP_MEMBERS: Final = f"{GROUP}/group-members"
"""Keeps an MCPGroup while an MCPServer or MCPRemoteProxy is a member of it."""
KIND_MCPREMOTEPROXY: Final = "MCPRemoteProxy"
MEMBER_KINDS: Final = (KIND_MCPSERVER, KIND_MCPREMOTEPROXY)

PHASE_READY: Final = "Ready"
PHASE_TERMINATING: Final = "Terminating"
CONDITION_READY: Final = "Ready"
CONDITION_DELETION_BLOCKED: Final = "DeletionBlocked"
CONDITION_GROUP_RESOLVED: Final = "GroupResolved"
"""On a member (MCPServer, MCPRemoteProxy): whether its group exists."""

STATUS_FIELDS: Final = (
    "phase",
    "members",
    "serverCount",
    "remoteProxyCount",
    "memberCount",
    "observedGeneration",
    "conditions",
)
"""Every status field the operator writes (and so may remove)."""


@dataclass(frozen=True, slots=True)
class Member:
    """One member of a group."""

    kind: str
    name: str
    phase: str | None
    """None before the member's own controller has written a phase."""

    def describe(self) -> str:
        return f"{self.kind} {self.name}"

    @property
    def order(self) -> tuple[str, str]:
        """Members are listed by kind, then name."""
        return self.kind, self.name


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def group_name_of(obj: Mapping[str, Any]) -> str | None:
    """The MCPGroup a raw MCPServer or MCPRemoteProxy names in `spec.groupRef`, if any."""
    name = _mapping(_mapping(obj.get("spec")).get("groupRef")).get("name")
    return name if isinstance(name, str) and name else None


def group_index_values(obj: Mapping[str, Any]) -> list[str]:
    """Index function: the `namespace/name` of the group `obj` names."""
    name = group_name_of(obj)
    if name is None:
        return []
    return [f"{_mapping(obj.get('metadata')).get('namespace') or ''}/{name}"]


def member_of(kind: str, obj: Mapping[str, Any]) -> Member:
    phase = _mapping(obj.get("status")).get("phase")
    return Member(
        kind=kind,
        name=str(_mapping(obj.get("metadata")).get("name") or ""),
        phase=phase if isinstance(phase, str) and phase else None,
    )


def members_of(
    *, servers: Iterable[Mapping[str, Any]], remote_proxies: Iterable[Mapping[str, Any]]
) -> list[Member]:
    """The members, sorted by kind then name."""
    members = [member_of(KIND_MCPSERVER, obj) for obj in servers]
    members += [member_of(KIND_MCPREMOTEPROXY, obj) for obj in remote_proxies]
    return sorted(members, key=lambda m: m.order)


def group_finalizer_action(obj: Mapping[str, Any], *, members: Sequence[Member]) -> FinalizerAction:
    """Add the finalizer to a live group; remove it from a deleted one without members."""
    return protection_action(
        obj, finalizer=FINALIZER_GROUP_MEMBERS, dependents=[m.describe() for m in members]
    )


def _member_json(member: Member) -> JsonObject:
    entry: JsonObject = {"kind": member.kind, "name": member.name}
    if member.phase is not None:
        entry["phase"] = member.phase
    return entry


def _count_message(servers: int, remote_proxies: int) -> str:
    if not servers and not remote_proxies:
        return "The group has no members"
    return f"The group has {servers} MCPServer(s) and {remote_proxies} MCPRemoteProxy(ies)"


def compute_group_conditions(
    obj: Mapping[str, Any], *, members: Sequence[Member]
) -> list[ConditionSpec]:
    """`Ready`, and `DeletionBlocked` while a deleted group still has members."""
    servers = sum(1 for m in members if m.kind == KIND_MCPSERVER)
    counts = _count_message(servers, len(members) - servers)
    if not is_deleting(obj):
        return [ConditionSpec(CONDITION_READY, "True", "Ready", counts)]
    conditions = [
        ConditionSpec(CONDITION_READY, "False", "Terminating", "The group is being deleted")
    ]
    if members:
        listed = describe_referrers([m.describe() for m in members])
        conditions.append(
            ConditionSpec(
                CONDITION_DELETION_BLOCKED,
                "True",
                "HasMembers",
                f"Deletion is blocked until no member names this group: {listed}",
            )
        )
    return conditions


def compute_group_status(
    obj: Mapping[str, Any], *, members: Sequence[Member], previous: Mapping[str, Any], now: str
) -> JsonObject:
    """The whole status to store (wire form)."""
    generation = _mapping(obj.get("metadata")).get("generation")
    servers = sum(1 for m in members if m.kind == KIND_MCPSERVER)
    status: JsonObject = {
        "phase": PHASE_TERMINATING if is_deleting(obj) else PHASE_READY,
        "members": [_member_json(m) for m in sorted(members, key=lambda m: m.order)],
        "serverCount": servers,
        "remoteProxyCount": len(members) - servers,
        "memberCount": len(members),
        "conditions": merge_conditions(
            previous.get("conditions") or [],
            compute_group_conditions(obj, members=members),
            generation=generation if isinstance(generation, int) else None,
            now=now,
        ),
    }
    if isinstance(generation, int):
        status["observedGeneration"] = generation
    return status


def group_condition(ref: GroupRef | None, *, found: bool) -> ConditionSpec | None:
    """`GroupResolved` of a member: whether the group its `groupRef` names exists (a member of a
    missing group still runs). None without `groupRef`."""
    if ref is None:
        return None
    if found:
        return ConditionSpec(
            CONDITION_GROUP_RESOLVED, "True", "GroupFound", f'Member of MCPGroup "{ref.name}"'
        )
    return ConditionSpec(
        CONDITION_GROUP_RESOLVED, "False", "GroupNotFound", f'MCPGroup "{ref.name}" not found'
    )
