"""The objects the operator creates for a VirtualMCPServer, as pure functions of it and its group.

For VirtualMCPServer `<name>`: ServiceAccount, Role, RoleBinding and Deployment `<name>-vmcp`,
ConfigMap `<name>-vmcp-runconfig` holding the RunConfig (with `aggregate`: one backend per group
member, see `backends`) and Service `mcp-<name>-vmcp`. Each child carries the VirtualMCPServer's
labels, one controller ownerReference to it and the `moorage.dev/applied-hash` annotation.

The aggregator's Role allows exactly what it does: read its RunConfig (and the Redis CA ConfigMap
`sessionStorage` names) and patch its own VirtualMCPServer's status (`backendHealth`,
`unresolvedConflicts`). With more than one replica a PodDisruptionBudget `<name>-vmcp` lets one
aggregator pod go at a time.

A group without members gives no children: there is nothing to aggregate (the RunConfig needs a
backend), so the aggregator is removed until a member joins. A missing group, a missing or invalid
reference or a malformed pod template are problems (`Failed`; what exists keeps running).

Pure: no I/O. `plan_virtualmcpserver` is the reconciler's entry point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from moorage_api.constants import (
    COMPONENT_PROXY_RUNNER,
    GROUP,
    KIND_VIRTUALMCPSERVER,
    LABEL_COMPONENT,
    LABEL_VIRTUALMCPSERVER,
    PLURAL_VIRTUALMCPSERVER,
)
from moorage_api.mcpserver import AuthzConfig, OIDCConfig, ToolConfigRef
from moorage_api.naming import (
    virtualmcpserver_labels,
    vmcp_name,
    vmcp_runconfig_configmap_name,
    vmcp_service_name,
)
from moorage_api.references import ExternalAuthConfigRef
from moorage_api.runconfig import RunConfig, RunConfigAggregate
from moorage_api.virtualmcpserver import VirtualMCPServer, VirtualMCPServerConditionType
from moorage_operator.planning import proxies
from moorage_operator.planning.comparing import stamp_applied_hash
from moorage_operator.planning.externalauth import outgoing_secret_env
from moorage_operator.planning.mcpremoteproxies.runconfigs import service_hosts
from moorage_operator.planning.mcpservers.children import PlanningSettings
from moorage_operator.planning.mcpservers.podtemplates import pod_template_problems
from moorage_operator.planning.mcpservers.references import (
    References,
    resolve_client_inputs,
    resolved_inputs,
)
from moorage_operator.planning.mcpservers.runconfigs import (
    client_fields,
    runconfig_owner,
    shared_state_fields,
)
from moorage_operator.planning.problems import Problem, by_condition
from moorage_operator.planning.proxies import READ, ChildOwner, rule, session_storage_config_maps
from moorage_operator.planning.virtualmcpservers.backends import (
    Member,
    desired_conflict_resolution,
    resolve_backends,
)

JsonObject = dict[str, Any]

STATUS_PATCH: Final = ("patch",)
"""The aggregator merge-patches `status.backendHealth` and `status.unresolvedConflicts`."""


@dataclass(frozen=True, slots=True)
class GroupView:
    """What the reconciler found of the VirtualMCPServer's group, from its caches."""

    group: JsonObject | None
    """The MCPGroup `groupRef` names; None when it does not exist."""
    members: Sequence[Member] = ()
    """Its members that parse, sorted by name."""
    tool_configs: Mapping[str, JsonObject] = field(default_factory=dict)
    """MCPToolConfigs of the namespace found, by name."""
    external_auth_configs: Mapping[str, JsonObject] = field(default_factory=dict)
    """MCPExternalAuthConfigs of the namespace found, by name."""
    config_maps: Mapping[str, JsonObject] = field(default_factory=dict)
    """The ConfigMaps `incomingAuth` references that exist, by name."""


@dataclass(frozen=True, slots=True)
class VirtualServerPlan:
    """What a reconcile of one VirtualMCPServer should converge to.

    Invariant: `children` is empty when `problems` is not, and when the group has no members.
    """

    children: tuple[JsonObject, ...] = ()
    problems: tuple[Problem, ...] = ()
    runconfig: RunConfig | None = None
    members: tuple[Member, ...] = ()
    condition_problems: Mapping[str, Problem] = field(default_factory=dict)
    """The first problem per condition type, for the status."""
    group_found: bool = True
    tool_config_hash: str | None = None
    """Always None: a virtual server has no single tool config (`toolConfigs` is per backend)."""


@dataclass(frozen=True, slots=True)
class IncomingSide:
    """`incomingAuth` in the shape `resolve_client_inputs` reads (no tool config, no upstream)."""

    oidc_config: OIDCConfig | None
    authz_config: AuthzConfig | None
    tool_config_ref: ToolConfigRef | None = None
    external_auth_config_ref: ExternalAuthConfigRef | None = None


def server_name(server: VirtualMCPServer) -> str:
    if not server.metadata.name:
        raise ValueError("VirtualMCPServer has no metadata.name")
    return server.metadata.name


def server_namespace(server: VirtualMCPServer) -> str:
    if not server.metadata.namespace:
        raise ValueError("VirtualMCPServer has no metadata.namespace")
    return server.metadata.namespace


def vmcp_selector(server: str) -> dict[str, str]:
    """Selector of the aggregator Deployment's pods (and of its Service)."""
    return {LABEL_VIRTUALMCPSERVER: server, LABEL_COMPONENT: COMPONENT_PROXY_RUNNER}


def vmcp_owner(server: VirtualMCPServer) -> ChildOwner:
    name = server_name(server)
    return ChildOwner(
        api_version=server.api_version,
        kind=server.kind,
        name=name,
        namespace=server_namespace(server),
        uid=server.metadata.uid or "",
        labels=virtualmcpserver_labels(name),
        selector=vmcp_selector(name),
    )


def desired_vmcp_rules(server: VirtualMCPServer) -> list[JsonObject]:
    """Exactly what the aggregator needs, limited to its own objects by name."""
    name = server_name(server)
    configmaps = [
        vmcp_runconfig_configmap_name(name),
        *session_storage_config_maps(server.spec.session_storage),
    ]
    return [
        rule("", "configmaps", READ, configmaps),
        rule(GROUP, f"{PLURAL_VIRTUALMCPSERVER}/status", STATUS_PATCH, [name]),
    ]


def group_problem(server: VirtualMCPServer, *, found: bool) -> Problem | None:
    if found:
        return None
    return Problem(
        VirtualMCPServerConditionType.GROUP_RESOLVED,
        "GroupNotFound",
        f'MCPGroup "{server.spec.group_ref.name}" not found',
        missing=True,
    )


def desired_vmcp_runconfig(
    server: VirtualMCPServer, *, view: GroupView, cluster_domain: str
) -> tuple[RunConfig | None, list[Problem]]:
    """The RunConfig (None without members), or the problems that prevent building it."""
    spec = server.spec
    incoming = IncomingSide(spec.incoming_auth.oidc_config, spec.incoming_auth.authz_config)
    client, problems = resolve_client_inputs(
        incoming, references=References(config_maps=view.config_maps)
    )
    resolution = resolve_backends(
        spec,
        members=view.members,
        tool_configs=view.tool_configs,
        external_auth_configs=view.external_auth_configs,
    )
    found = [*problems, *resolution.problems]
    if found or not resolution.backends:
        return None, found
    name, namespace = server_name(server), server_namespace(server)
    backends = list(resolution.backends)
    runconfig = RunConfig(
        name=name,
        namespace=namespace,
        owner=runconfig_owner(KIND_VIRTUALMCPSERVER, name=name, uid=server.metadata.uid),
        generation=server.metadata.generation or 0,
        transport="streamable-http",
        proxy_mode="streamable-http",
        port=spec.port,
        allowed_hosts=service_hosts(
            vmcp_service_name(name),
            namespace=namespace,
            port=spec.port,
            cluster_domain=cluster_domain,
        ),
        **client_fields(resolved_inputs(client), audit=spec.audit.enabled),
        trust_proxy_headers=spec.trust_proxy_headers,
        endpoint_prefix=spec.endpoint_prefix,
        aggregate=RunConfigAggregate(
            backends=backends,
            conflict_resolution=desired_conflict_resolution(
                spec, backends=[b.name for b in backends]
            ),
        ),
        **shared_state_fields(
            spec.session_storage, spec.rate_limits, namespace=namespace, name=vmcp_name(name)
        ),
    )
    return runconfig, []


def backend_secret_env(runconfig: RunConfig) -> list[JsonObject]:
    """The aggregator container's env for every backend's outgoing secrets."""
    backends = runconfig.aggregate.backends if runconfig.aggregate else []
    return [env for backend in backends for env in outgoing_secret_env(backend.outgoing_auth)]


def desired_vmcp_children(
    server: VirtualMCPServer, *, runconfig: RunConfig, image: str
) -> list[JsonObject]:
    """The children of `server` for `runconfig`, in apply order."""
    owner = vmcp_owner(server)
    spec = server.spec
    standalone = proxies.StandaloneProxy(
        name=vmcp_name(owner.name),
        runconfig_configmap=vmcp_runconfig_configmap_name(owner.name),
        service=vmcp_service_name(owner.name),
        port=spec.port,
        replicas=spec.replicas,
        session_affinity=spec.session_affinity,
        rules=desired_vmcp_rules(server),
        env=backend_secret_env(runconfig),
        resources=spec.resources.model_dump(mode="json", by_alias=True, exclude_none=True)
        if spec.resources
        else None,
        pod_template_spec=spec.pod_template_spec,
    )
    return proxies.desired_standalone_proxy_children(
        owner, standalone, runconfig=runconfig, image=image
    )


def plan_virtualmcpserver(
    server: VirtualMCPServer, *, settings: PlanningSettings, view: GroupView
) -> VirtualServerPlan:
    """The children of `server`, or the problems that prevent building them."""
    group_found = view.group is not None
    problems = pod_template_problems(server.spec.pod_template_spec)
    if (missing := group_problem(server, found=group_found)) is not None:
        problems.append(missing)
    members = tuple(view.members) if group_found else ()
    if problems:
        return VirtualServerPlan(
            problems=tuple(problems),
            condition_problems=by_condition(problems),
            group_found=group_found,
            members=members,
        )
    runconfig, found = desired_vmcp_runconfig(
        server, view=view, cluster_domain=settings.cluster_domain
    )
    if found:
        return VirtualServerPlan(
            problems=tuple(found),
            condition_problems=by_condition(found),
            members=members,
        )
    if runconfig is None:
        return VirtualServerPlan(members=members)
    children = desired_vmcp_children(server, runconfig=runconfig, image=settings.proxyrunner_image)
    return VirtualServerPlan(
        children=tuple(stamp_applied_hash(child) for child in children),
        runconfig=runconfig,
        members=members,
    )
