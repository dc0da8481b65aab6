"""An MCPRemoteProxy's status from its plan, its proxy Deployment and the proxy runner's check.

Phase (as an MCPServer's, with the proxy Deployment alone deciding readiness):
- `Terminating` while the MCPRemoteProxy is being deleted;
- `Failed` when the spec cannot be built (missing or invalid reference, malformed pod template,
  a child the apiserver rejects as invalid), when a proxy pod is stuck (CrashLoopBackOff, image
  errors) or the Deployment exceeded its progress deadline;
- `Stopped` at `replicas: 0`;
- `Running` when the proxy Deployment has ready replicas;
- `Pending` otherwise.

`RemoteAvailable` comes from `status.remoteCheck`, which only the proxy runner writes (the
operator never does): no check yet → Unknown (`NotChecked`); answered → True (`Answered`);
otherwise False (`Unreachable`) with the check's message.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from moorage_api.constants import DEFAULT_CLUSTER_DOMAIN
from moorage_api.mcpremoteproxy import (
    MCPRemoteProxy,
    MCPRemoteProxyConditionType,
    RemoteAvailableReason,
    RemoteCheck,
)
from moorage_api.naming import mcpremoteproxy_url
from moorage_operator.planning.conditions import ConditionSpec
from moorage_operator.planning.mcpgroups import group_condition
from moorage_operator.planning.mcpremoteproxies.children import RemoteProxyPlan
from moorage_operator.planning.mcpservers.status import (
    STATUS_FIELDS as PROXY_STATUS_FIELDS,
)
from moorage_operator.planning.mcpservers.status import (
    Observed,
    PhaseVerdict,
    auth_condition,
    deployment_verdict,
    owner_status,
    pod_template_condition,
    ready_condition,
    tool_config_condition,
)
from moorage_operator.planning.problems import Problem

JsonObject = dict[str, Any]

STATUS_FIELDS: Final = PROXY_STATUS_FIELDS
"""Every status field the operator writes (and so may remove): an MCPServer's; never
`remoteCheck`."""


def compute_remote_phase(
    proxy: MCPRemoteProxy,
    *,
    problems: tuple[Problem, ...],
    observed: Observed,
    retrying: str | None = None,
) -> PhaseVerdict:
    """The phase, its message and the `Ready` reason (see the module docstring)."""
    return deployment_verdict(
        what="Remote proxy",
        deleting=bool(proxy.metadata.deletion_timestamp),
        problems=problems,
        retrying=retrying,
        stopped=proxy.spec.replicas == 0,
        observed=observed,
    )


def remote_available_condition(check: RemoteCheck | None) -> ConditionSpec:
    """`RemoteAvailable` from the proxy runner's last check of the remote."""
    type_ = MCPRemoteProxyConditionType.REMOTE_AVAILABLE
    if check is None:
        return ConditionSpec(
            type_,
            "Unknown",
            RemoteAvailableReason.NOT_CHECKED,
            "The proxy runner has not checked the remote yet",
        )
    if check.answered:
        about = ", ".join(
            part
            for part in (
                f"server {check.server_name}" if check.server_name else "",
                f"protocol {check.protocol_version}" if check.protocol_version else "",
            )
            if part
        )
        message = f"The remote answered initialize ({about})" if about else check.message
        return ConditionSpec(
            type_, "True", RemoteAvailableReason.ANSWERED, message or "The remote answered"
        )
    return ConditionSpec(
        type_,
        "False",
        RemoteAvailableReason.UNREACHABLE,
        check.message or "The remote did not answer initialize",
    )


def compute_remote_conditions(
    proxy: MCPRemoteProxy, *, plan: RemoteProxyPlan, verdict: PhaseVerdict
) -> list[ConditionSpec]:
    """Every MCPRemoteProxy condition, `Ready` first; `GroupResolved` only with a `groupRef`."""
    conditions = [
        ready_condition(verdict),
        remote_available_condition(proxy.status.remote_check),
        pod_template_condition(plan),
        tool_config_condition(proxy.spec, plan),
        auth_condition(proxy.spec, plan),
    ]
    group = group_condition(proxy.spec.group_ref, found=plan.group_found)
    return conditions if group is None else [*conditions, group]


def compute_remote_status(
    proxy: MCPRemoteProxy,
    *,
    plan: RemoteProxyPlan | None,
    observed: Observed,
    previous: Mapping[str, Any],
    now: str,
    retrying: str | None = None,
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN,
) -> JsonObject:
    """The status fields the operator writes (`STATUS_FIELDS`); `plan` None while the proxy is
    being deleted."""
    current = plan or RemoteProxyPlan()
    verdict = compute_remote_phase(
        proxy, problems=current.problems, observed=observed, retrying=retrying
    )
    return owner_status(
        verdict=verdict,
        conditions=(
            None
            if plan is None
            else compute_remote_conditions(proxy, plan=current, verdict=verdict)
        ),
        previous=previous,
        generation=proxy.metadata.generation,
        now=now,
        url=mcpremoteproxy_url(
            proxy.metadata.name or "",
            namespace=proxy.metadata.namespace or "",
            port=proxy.spec.port,
            transport=proxy.spec.transport,
            cluster_domain=cluster_domain,
        ),
        observed=observed,
        tool_config_hash=current.tool_config_hash,
    )
