"""The objects the operator creates for an MCPServer (spec §3), as pure functions of it.

For MCPServer `<name>`: ServiceAccount, Role and RoleBinding `<name>-proxy-runner` (and, for a stdio
server sharing sessions through Redis, RoleBinding `<name>-proxy-runner-leases`), ServiceAccount
`<name>-sa` (unless `spec.serviceAccount` names one), ConfigMap `<name>-runconfig` holding the
RunConfig, Deployment `<name>` running the proxy runner, Service `mcp-<name>-proxy` and, with more
than one proxy replica, PodDisruptionBudget `<name>`. Each
carries the labels of spec §3, one controller ownerReference to the MCPServer, and the
`moorage.dev/applied-hash` annotation the reconciler compares before applying.

The proxy pod template's `moorage.dev/runconfig-checksum` covers only the workload part of the
RunConfig (`moorage_api.runconfig.restart_checksum`), so tool filter/override, authorisation and
audit changes reach the running proxy through its ConfigMap without a rollout.

Pure: no I/O. `plan_mcpserver` is the reconciler's entry point (children, or the problems that
prevent building them); `desired_children` is the same for callers that want the objects or an
exception.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from moorage_api.constants import COMPONENT_PROXY_RUNNER, LABEL_COMPONENT, LABEL_MCPSERVER
from moorage_api.mcpserver import MCPServer
from moorage_api.naming import (
    egress_policy_name,
    headless_service_name,
    mcp_service_account_name,
    mcp_service_name,
    mcpserver_labels,
    proxy_runner_name,
    proxy_service_name,
    runconfig_configmap_name,
    stdio_pod_name,
)
from moorage_api.runconfig import RunConfig
from moorage_operator.planning import proxies
from moorage_operator.planning.comparing import stamp_applied_hash
from moorage_operator.planning.externalauth import outgoing_secret_env
from moorage_operator.planning.mcpservers.podtemplates import pod_template_problems
from moorage_operator.planning.mcpservers.references import Problem, References, resolve_inputs
from moorage_operator.planning.mcpservers.runconfigs import (
    desired_runconfig,
    server_name,
    server_namespace,
)
from moorage_operator.planning.problems import by_condition
from moorage_operator.planning.proxies import (
    EXCLUSIVE_KINDS,
    OPERATOR_ENV,
    READ,
    ROLLING_UPDATE,
    ChildOwner,
    OwnerPlan,
    ProxyPod,
    controller_reference,
    desired_proxy_deployment,
    desired_service_account,
    is_controlled_by,
    runconfig_secret_env,
    session_storage_config_maps,
    stale_owned,
)
from moorage_operator.planning.proxies import rule as _rule

JsonObject = dict[str, Any]

__all__ = ["EXCLUSIVE_KINDS", "is_controlled_by"]

APPLY: Final = (*READ, "create", "patch", "delete")
"""What the proxy runner does to the objects it owns: watch them by name, server-side apply them
and delete those no longer wanted. Server-side apply is a PATCH to the object's own URL; when the
object does not exist the apiserver also authorises `create` on that same name, so even `create`
is limited by `resourceNames` here (a plain POST, whose name is not in the URL, stays refused)."""


STDIO_LEASES_CLUSTERROLE: Final = "moorage-proxyrunner-stdio-leases"
"""The ClusterRole (deploy/rbac) letting a stdio server's proxies hold their ordinals' Leases:
get, create, update. The operator may bind it (`bind` on it by name) without holding it."""


def desired_proxy_runner_rules(server: MCPServer) -> list[JsonObject]:
    """Exactly what the proxy runner of `server` needs, each rule limited to the objects it is
    for (`resourceNames`) wherever Kubernetes can authorise by name.

    Its StatefulSet `<name>`, Services `mcp-<name>-headless` and `mcp-<name>`, and egress
    NetworkPolicy are watched with a
    `metadata.name` field selector, which RBAC authorises against `resourceNames`, and applied
    with server-side apply (see `APPLY`). The ConfigMaps it reads are its RunConfig and, for a configMap
    permission profile, that profile. A stdio server's only pod is `<name>-0`: the proxy runner
    follows it by name and attaches to it. An HTTP server's pods (as many as `backendReplicas`,
    or an autoscaler, makes) are followed by label for readiness; a label selector cannot be
    authorised by name, so that one rule is read-only and namespace-wide, and HTTP servers get
    no `pods/attach` at all. A stdio server whose proxies share sessions through Redis runs one
    pod per proxy replica (`<name>-<ordinal>`), each proxy holding Lease `<name>-stdio-<ordinal>`
    (`desired_lease_binding`): its pods are followed by label like an HTTP server's and attached
    by name. Nothing reads pod logs.
    """
    name = server_name(server)
    configmaps = [runconfig_configmap_name(name)]
    profile = server.spec.permission_profile
    if profile.type == "configMap":
        configmaps.append(profile.name)
    configmaps += session_storage_config_maps(server.spec.session_storage)
    rules = [
        _rule("apps", "statefulsets", APPLY, [name]),
        _rule("", "services", APPLY, [headless_service_name(name), mcp_service_name(name)]),
        _rule("networking.k8s.io", "networkpolicies", APPLY, [egress_policy_name(name)]),
        _rule("", "configmaps", READ, configmaps),
    ]
    if server.spec.transport == "stdio" and server.spec.session_storage.type == "redis":
        # One backend pod per proxy replica, each proxy holding the Lease of its ordinal (granted
        # by `desired_lease_binding`); the pods are followed by label (read-only, namespace-wide,
        # as for HTTP servers) and attached by name.
        ordinals = range(max(server.spec.replicas or 1, 1))
        rules += [
            {"apiGroups": [""], "resources": ["pods"], "verbs": list(READ)},
            _rule(
                "", "pods/attach", ("create", "get"), [stdio_pod_name(name, i) for i in ordinals]
            ),
        ]
    elif server.spec.transport == "stdio":
        pod = stdio_pod_name(name)
        rules += [
            _rule("", "pods", READ, [pod]),
            _rule("", "pods/attach", ("create", "get"), [pod]),
        ]
    else:
        rules.append({"apiGroups": [""], "resources": ["pods"], "verbs": list(READ)})
    return rules


class PlanningSettings(Protocol):
    """What the planners need from the operator's settings."""

    @property
    def proxyrunner_image(self) -> str:
        """Image of the proxy runner Deployment (PROXYRUNNER_IMAGE)."""
        ...

    @property
    def cluster_domain(self) -> str:
        """The cluster's DNS domain (CLUSTER_DOMAIN), for the Service names the proxy accepts."""
        ...


class PlanningError(ValueError):
    """The MCPServer cannot be turned into children; `problems` says why."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = tuple(problems)


@dataclass(frozen=True, slots=True)
class ServerPlan(OwnerPlan):
    """What a reconcile of one MCPServer should converge to (see `OwnerPlan`)."""

    replicas_capped: bool = False
    """`replicas` > 1 on a stdio server with memory session storage, capped at 1 (one process
    cannot be shared by two proxies, and memory cannot share sessions)."""


# -- the children, one builder each -------------------------------------------------------------


def server_owner(server: MCPServer) -> ChildOwner:
    """`server` as the owner of its children."""
    name = server_name(server)
    return ChildOwner(
        api_version=server.api_version,
        kind=server.kind,
        name=name,
        namespace=server_namespace(server),
        uid=server.metadata.uid or "",
        labels=mcpserver_labels(name),
        selector=proxy_selector(name),
    )


def desired_controller_reference(server: MCPServer) -> JsonObject:
    """The one controller ownerReference every child carries (GC deletes them with the server)."""
    return controller_reference(server_owner(server))


def proxy_selector(server: str) -> dict[str, str]:
    """Selector of the proxy Deployment's pods (and of the proxy Service)."""
    return {LABEL_MCPSERVER: server, LABEL_COMPONENT: COMPONENT_PROXY_RUNNER}


def desired_proxy_service_account(server: MCPServer) -> JsonObject:
    return desired_service_account(server_owner(server), proxy_runner_name(server_name(server)))


def desired_mcp_service_account(server: MCPServer) -> JsonObject | None:
    """ServiceAccount `<name>-sa` for the MCP pods; None when `spec.serviceAccount` is set."""
    if server.spec.service_account:
        return None
    return desired_service_account(
        server_owner(server), mcp_service_account_name(server_name(server))
    )


def desired_role(server: MCPServer) -> JsonObject:
    return proxies.desired_role(
        server_owner(server),
        proxy_runner_name(server_name(server)),
        rules=desired_proxy_runner_rules(server),
    )


def desired_role_binding(server: MCPServer) -> JsonObject:
    return proxies.desired_role_binding(
        server_owner(server), proxy_runner_name(server_name(server))
    )


def desired_lease_binding(server: MCPServer) -> JsonObject | None:
    """RoleBinding `<name>-proxy-runner-leases` of a stdio server whose proxies share sessions
    through Redis: `STDIO_LEASES_CLUSTERROLE` for the proxy runner, in this namespace only.
    A Lease is created with a POST, which names no object, so a Role could not limit it by
    name anyway; a ClusterRole bound by name keeps Lease permissions off the operator itself
    (RBAC would otherwise require it to hold them in every namespace it watches)."""
    if server.spec.transport != "stdio" or server.spec.session_storage.type != "redis":
        return None
    account = proxy_runner_name(server_name(server))
    owner = server_owner(server)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": proxies.child_metadata(owner, f"{account}-leases"),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": STDIO_LEASES_CLUSTERROLE,
        },
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": owner.namespace}],
    }


def desired_runconfig_configmap(server: MCPServer, *, runconfig: RunConfig) -> JsonObject:
    return proxies.desired_runconfig_configmap(
        server_owner(server), runconfig_configmap_name(server_name(server)), runconfig=runconfig
    )


def proxy_replicas(server: MCPServer) -> int | None:
    """Replicas of the proxy Deployment: None (not managed, HPA-friendly) when unset. A stdio
    server with memory session storage gets at most 1: its replicas could not share sessions, and
    the admission rules refuse more (an object stored before they did is capped here). With
    Redis each proxy replica runs its own backend pod, so nothing is capped."""
    replicas = server.spec.replicas
    if replicas is None:
        return None
    if server.spec.transport == "stdio" and server.spec.session_storage.type != "redis":
        return min(replicas, 1)
    return replicas


STDIO_ROLLING_UPDATE: Final = {
    "type": "RollingUpdate",
    "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
}
"""Several stdio proxies (Redis) each hold one backend ordinal's Lease: a new pod can only take
the ordinal an old one gave up, so one old pod goes first, never a surge."""


def proxy_strategy(server: MCPServer) -> Mapping[str, Any]:
    """How the proxy Deployment rolls: a single stdio proxy is replaced (two must never attach
    to one backend process at once), several stdio proxies one at a time, others as usual."""
    if server.spec.transport != "stdio":
        return ROLLING_UPDATE
    if server.spec.session_storage.type == "redis":
        return STDIO_ROLLING_UPDATE
    return {"type": "Recreate"}


def is_replicas_capped(server: MCPServer) -> bool:
    return proxy_replicas(server) != server.spec.replicas


def _proxy_env(server: MCPServer, *, secrets: Sequence[JsonObject]) -> list[JsonObject]:
    """The user's env overrides (never replacing ours), then the Secret-backed env the
    RunConfig's outgoing authentication names."""
    reserved = {*OPERATOR_ENV, *(var["name"] for var in secrets)}
    overrides = server.spec.resource_overrides
    deployment = overrides.proxy_deployment if overrides else None
    env: list[JsonObject] = [
        {"name": var.name, "value": var.value}
        for var in (deployment.env if deployment else ())
        if var.name not in reserved
    ]
    return env + list(secrets)


def desired_proxy_pod_template(
    server: MCPServer, *, runconfig: RunConfig, image: str
) -> JsonObject:
    name = server_name(server)
    overrides = server.spec.resource_overrides
    deployment = overrides.proxy_deployment if overrides else None
    pod_meta = deployment.pod_template_metadata_overrides if deployment else None
    pod = ProxyPod(
        service_account=proxy_runner_name(name),
        runconfig_configmap=runconfig_configmap_name(name),
        port=server.spec.port,
        env=_proxy_env(
            server,
            secrets=[
                *outgoing_secret_env(runconfig.outgoing_auth),
                *runconfig_secret_env(runconfig),
            ],
        ),
        labels=pod_meta.labels if pod_meta else {},
        annotations=pod_meta.annotations if pod_meta else {},
    )
    return proxies.desired_proxy_pod_template(
        server_owner(server), pod=pod, runconfig=runconfig, image=image
    )


def desired_deployment(server: MCPServer, *, runconfig: RunConfig, image: str) -> JsonObject:
    overrides = server.spec.resource_overrides
    deployment = overrides.proxy_deployment if overrides else None
    return desired_proxy_deployment(
        server_owner(server),
        server_name(server),
        template=desired_proxy_pod_template(server, runconfig=runconfig, image=image),
        replicas=proxy_replicas(server),
        strategy=proxy_strategy(server),
        labels=deployment.labels if deployment else None,
        annotations=deployment.annotations if deployment else None,
    )


def desired_disruption_budget(server: MCPServer) -> JsonObject | None:
    return proxies.desired_proxy_disruption_budget(
        server_owner(server), server_name(server), replicas=proxy_replicas(server)
    )


def desired_proxy_service(server: MCPServer) -> JsonObject:
    overrides = server.spec.resource_overrides
    service = overrides.proxy_service if overrides else None
    return proxies.desired_proxy_service(
        server_owner(server),
        proxy_service_name(server_name(server)),
        port=server.spec.port,
        session_affinity=server.spec.session_affinity,
        labels=service.labels if service else None,
        annotations=service.annotations if service else None,
    )


# -- planning -----------------------------------------------------------------------------------


def plan_mcpserver(
    server: MCPServer, *, settings: PlanningSettings, references: References
) -> ServerPlan:
    """The children of `server`, or the problems that prevent building them."""
    problems = pod_template_problems(server.spec.pod_template_spec)
    resolution = resolve_inputs(server.spec, references=references)
    problems.extend(resolution.problems)
    capped = is_replicas_capped(server)
    group_found = server.spec.group_ref is None or references.group is not None
    if problems or resolution.inputs is None:
        return ServerPlan(
            problems=tuple(problems),
            replicas_capped=capped,
            condition_problems=by_condition(problems),
            group_found=group_found,
        )
    runconfig = desired_runconfig(
        server, inputs=resolution.inputs, cluster_domain=settings.cluster_domain
    )
    children = [
        desired_proxy_service_account(server),
        desired_role(server),
        desired_role_binding(server),
        desired_lease_binding(server),
        desired_mcp_service_account(server),
        desired_runconfig_configmap(server, runconfig=runconfig),
        desired_deployment(server, runconfig=runconfig, image=settings.proxyrunner_image),
        desired_proxy_service(server),
        desired_disruption_budget(server),
    ]
    return ServerPlan(
        children=tuple(stamp_applied_hash(child) for child in children if child is not None),
        runconfig=runconfig,
        tool_config_hash=resolution.inputs.tool_config_hash,
        replicas_capped=capped,
        group_found=group_found,
    )


def desired_children(
    server: MCPServer,
    *,
    settings: PlanningSettings,
    references: References | None = None,
) -> list[JsonObject]:
    """Exactly the objects of spec §3 for `server`; `PlanningError` when they cannot be built
    (a referenced object is missing or unusable, the pod template is malformed)."""
    plan = plan_mcpserver(server, settings=settings, references=references or References())
    if plan.problems:
        raise PlanningError(plan.problems)
    return list(plan.children)


def stale_children(
    server: MCPServer, *, desired: Iterable[Mapping[str, Any]], owned: Iterable[JsonObject]
) -> list[JsonObject]:
    """Objects of the `EXCLUSIVE_KINDS` controlled by `server` that are no longer desired
    (e.g. `<name>-sa` after `spec.serviceAccount` was set); the reconciler deletes them."""
    return stale_owned(server.metadata.uid or "", desired=desired, owned=owned)
