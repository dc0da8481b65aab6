"""A VirtualMCPServer's status from its plan, its aggregator Deployment and the aggregator's
reports.

The aggregator (the proxy runner) writes `backendHealth` and `unresolvedConflicts`; the operator
never does, and derives from them and from the group's members:

- `discoveredBackends`: every member, sorted by name, with the URL it is reached at and its
  health (`healthy`/`unhealthy` from the aggregator's last check, `unknown` before one; a report
  about a name that is no longer a member is ignored) and tool count; `backendCount`;
- `BackendsDiscovered`: True when every member has been checked, False naming those that were not
  (or when the group has no members; `healthy` null is not checked yet);
- `ConflictsResolved`: True without unresolved conflicts, False naming each one and its backends;
- `GroupResolved`, `PodTemplateValid`, `ToolConfigResolved`, `AuthConfigValid` as on an MCPServer.

Phase as an MCPRemoteProxy's (the aggregator Deployment alone decides readiness); a group without
members is `Pending` (nothing to aggregate).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from moorage_api.constants import DEFAULT_CLUSTER_DOMAIN
from moorage_api.naming import virtualmcpserver_url
from moorage_api.virtualmcpserver import (
    BackendHealth,
    UnresolvedConflict,
    VirtualMCPServer,
    VirtualMCPServerConditionType,
)
from moorage_operator.planning.conditions import ConditionSpec
from moorage_operator.planning.mcpservers.status import (
    Observed,
    PhaseVerdict,
    auth_condition,
    deployment_verdict,
    owner_status,
    pod_template_condition,
    ready_condition,
)
from moorage_operator.planning.problems import Problem
from moorage_operator.planning.virtualmcpservers.backends import Member
from moorage_operator.planning.virtualmcpservers.children import IncomingSide, VirtualServerPlan

JsonObject = dict[str, Any]

STATUS_FIELDS: Final = (
    "phase",
    "message",
    "url",
    "readyReplicas",
    "observedGeneration",
    "discoveredBackends",
    "backendCount",
    "conditions",
)
"""Every status field the operator writes; never `backendHealth` or `unresolvedConflicts`."""


def compute_vmcp_phase(
    server: VirtualMCPServer,
    *,
    problems: Sequence[Problem],
    members: int,
    observed: Observed,
    retrying: str | None = None,
) -> PhaseVerdict:
    """The phase, its message and the `Ready` reason (see the module docstring)."""
    return deployment_verdict(
        what="Virtual MCP server",
        deleting=bool(server.metadata.deletion_timestamp),
        problems=problems,
        retrying=retrying,
        stopped=server.spec.replicas == 0,
        observed=observed,
        idle=(
            f'MCPGroup "{server.spec.group_ref.name}" has no members; nothing to aggregate'
            if members == 0
            else None
        ),
    )


def discovered_backends(
    members: Sequence[Member], health: Sequence[BackendHealth]
) -> list[JsonObject]:
    """Each member joined with the aggregator's last check of it (wire form)."""
    checks = {entry.name: entry for entry in health}
    entries: list[JsonObject] = []
    for member in members:
        entry: JsonObject = {"name": member.name, "kind": member.kind, "url": member.url}
        check = checks.get(member.name)
        healthy = None if check is None else check.healthy
        entry["health"] = "unknown" if healthy is None else "healthy" if healthy else "unhealthy"
        if check is not None and check.tool_count is not None:
            entry["toolCount"] = check.tool_count
        entries.append(entry)
    return entries


def backends_condition(members: Sequence[Member], health: Sequence[BackendHealth]) -> ConditionSpec:
    type_ = VirtualMCPServerConditionType.BACKENDS_DISCOVERED
    if not members:
        return ConditionSpec(type_, "False", "NoMembers", "The group has no members")
    checked = {entry.name for entry in health if entry.healthy is not None}
    unchecked = [m.name for m in members if m.name not in checked]
    if unchecked:
        return ConditionSpec(
            type_,
            "False",
            "NotChecked",
            f"Not yet checked by the aggregator: {', '.join(unchecked)}",
        )
    names = {m.name for m in members}
    unhealthy = [e.name for e in health if e.healthy is False and e.name in names]
    message = f"{len(members)} backend(s) checked"
    if unhealthy:
        message += f"; unhealthy: {', '.join(sorted(unhealthy))}"
    return ConditionSpec(type_, "True", "Checked", message)


def conflicts_condition(conflicts: Sequence[UnresolvedConflict]) -> ConditionSpec:
    type_ = VirtualMCPServerConditionType.CONFLICTS_RESOLVED
    if not conflicts:
        return ConditionSpec(type_, "True", "Resolved", "No name conflict is left unresolved")
    named = "; ".join(
        f"{c.name} ({', '.join(c.backends)})" for c in sorted(conflicts, key=lambda c: c.name)
    )
    return ConditionSpec(type_, "False", "Unresolved", f"Unresolved name conflicts: {named}")


def _tool_configs_condition(server: VirtualMCPServer, plan: VirtualServerPlan) -> ConditionSpec:
    type_ = VirtualMCPServerConditionType.TOOL_CONFIG_RESOLVED
    problem = plan.condition_problems.get(type_)
    if problem is not None:
        return ConditionSpec(type_, "False", problem.reason, problem.message)
    names = sorted(server.spec.tool_configs)
    if not names:
        return ConditionSpec(type_, "True", "NoToolConfig", "No backend has an MCPToolConfig")
    return ConditionSpec(
        type_, "True", "ToolConfigResolved", f"MCPToolConfigs in effect for: {', '.join(names)}"
    )


def _group_condition(server: VirtualMCPServer, plan: VirtualServerPlan) -> ConditionSpec:
    type_ = VirtualMCPServerConditionType.GROUP_RESOLVED
    name = server.spec.group_ref.name
    if plan.group_found:
        return ConditionSpec(type_, "True", "GroupFound", f'Aggregating MCPGroup "{name}"')
    return ConditionSpec(type_, "False", "GroupNotFound", f'MCPGroup "{name}" not found')


def compute_vmcp_conditions(
    server: VirtualMCPServer, *, plan: VirtualServerPlan, verdict: PhaseVerdict
) -> list[ConditionSpec]:
    """Every VirtualMCPServer condition, `Ready` first."""
    status = server.status
    incoming = server.spec.incoming_auth
    return [
        ready_condition(verdict),
        backends_condition(plan.members, status.backend_health),
        conflicts_condition(status.unresolved_conflicts),
        _group_condition(server, plan),
        pod_template_condition(plan),
        _tool_configs_condition(server, plan),
        auth_condition(IncomingSide(incoming.oidc_config, incoming.authz_config), plan),
    ]


def compute_vmcp_status(
    server: VirtualMCPServer,
    *,
    plan: VirtualServerPlan | None,
    observed: Observed,
    previous: Mapping[str, Any],
    now: str,
    retrying: str | None = None,
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN,
) -> JsonObject:
    """The status fields the operator writes (`STATUS_FIELDS`); `plan` None while the server is
    being deleted (the backends keep their last word)."""
    current = plan or VirtualServerPlan()
    verdict = compute_vmcp_phase(
        server,
        problems=current.problems,
        members=len(current.members),
        observed=observed,
        retrying=retrying,
    )
    status = owner_status(
        verdict=verdict,
        conditions=(
            None if plan is None else compute_vmcp_conditions(server, plan=current, verdict=verdict)
        ),
        previous=previous,
        generation=server.metadata.generation,
        now=now,
        url=virtualmcpserver_url(
            server.metadata.name or "",
            namespace=server.metadata.namespace or "",
            port=server.spec.port,
            cluster_domain=cluster_domain,
        ),
        observed=observed,
        tool_config_hash=None,
    )
    if plan is None:
        for key in ("discoveredBackends", "backendCount"):
            if key in previous:
                status[key] = previous[key]
        return status
    status["discoveredBackends"] = discovered_backends(plan.members, server.status.backend_health)
    status["backendCount"] = len(plan.members)
    return status
