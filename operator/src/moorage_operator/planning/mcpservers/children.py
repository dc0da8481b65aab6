"""The objects the operator creates for an MCPServer (spec §3), as pure functions of it.

For MCPServer `<name>`: ServiceAccount, Role and RoleBinding `<name>-proxy-runner`, ServiceAccount
`<name>-sa` (unless `spec.serviceAccount` names one), ConfigMap `<name>-runconfig` holding the
RunConfig, Deployment `<name>` running the proxy runner, and Service `mcp-<name>-proxy`. Each
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

import hashlib
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from moorage_api.constants import (
    ANNOTATION_CONTENT_CHECKSUM,
    ANNOTATION_RUNCONFIG_CHECKSUM,
    COMPONENT_PROXY_RUNNER,
    CONTAINER_PROXYRUNNER,
    LABEL_COMPONENT,
    LABEL_MCPSERVER,
    RUNCONFIG_KEY,
    RUNCONFIG_PATH,
)
from moorage_api.mcpserver import MCPServer, MCPServerConditionType
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
from moorage_api.runconfig import RunConfig, render_runconfig_json, restart_checksum
from moorage_operator.planning.comparing import stamp_applied_hash
from moorage_operator.planning.mcpservers.podtemplates import pod_template_problem
from moorage_operator.planning.mcpservers.references import Problem, References, resolve_inputs
from moorage_operator.planning.mcpservers.runconfigs import (
    desired_runconfig,
    server_name,
    server_namespace,
)

JsonObject = dict[str, Any]

HTTP_PORT_NAME: Final = "http"
HEALTH_PATH: Final = "/health"
NONROOT_UID: Final = 65534
"""`nobody`: the user the proxy runner image runs as."""
RUNCONFIG_VOLUME: Final = "runconfig"
TMP_VOLUME: Final = "tmp"
CLIENT_IP_TIMEOUT: Final = 10800
"""Seconds a ClientIP session sticks to one proxy pod (the Kubernetes default, 3 h)."""

READ: Final = ("get", "list", "watch")
APPLY: Final = (*READ, "create", "patch", "delete")
"""What the proxy runner does to the objects it owns: watch them by name, server-side apply them
and delete those no longer wanted. Server-side apply is a PATCH to the object's own URL; when the
object does not exist the apiserver also authorises `create` on that same name, so even `create`
is limited by `resourceNames` here (a plain POST, whose name is not in the URL, stays refused)."""


def _rule(group: str, resource: str, verbs: Iterable[str], names: Iterable[str]) -> JsonObject:
    return {
        "apiGroups": [group],
        "resources": [resource],
        "resourceNames": sorted(set(names)),
        "verbs": list(verbs),
    }


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
    no `pods/attach` at all. Nothing reads pod logs.
    """
    name = server_name(server)
    configmaps = [runconfig_configmap_name(name)]
    profile = server.spec.permission_profile
    if profile.type == "configMap":
        configmaps.append(profile.name)
    redis = server.spec.session_storage.redis
    if redis is not None and redis.tls is not None and redis.tls.ca_config_map_ref is not None:
        configmaps.append(redis.tls.ca_config_map_ref.name)
    rules = [
        _rule("apps", "statefulsets", APPLY, [name]),
        _rule("", "services", APPLY, [headless_service_name(name), mcp_service_name(name)]),
        _rule("networking.k8s.io", "networkpolicies", APPLY, [egress_policy_name(name)]),
        _rule("", "configmaps", READ, configmaps),
    ]
    if server.spec.transport == "stdio":
        pod = stdio_pod_name(name)
        rules += [
            _rule("", "pods", READ, [pod]),
            _rule("", "pods/attach", ("create", "get"), [pod]),
        ]
    else:
        rules.append({"apiGroups": [""], "resources": ["pods"], "verbs": list(READ)})
    return rules


OPERATOR_ENV: Final = ("POD_NAME", "POD_NAMESPACE")
"""Env names the operator sets on the proxyrunner container; overrides cannot replace them."""

# Kinds the operator alone creates for an MCPServer; one of them that is owned by the server but
# no longer desired is deleted. Services are not listed: the proxy runner creates one too.
EXCLUSIVE_KINDS: Final = frozenset(
    {
        ("v1", "ServiceAccount"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("v1", "ConfigMap"),
        ("apps/v1", "Deployment"),
    }
)


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
class ServerPlan:
    """What a reconcile of one MCPServer should converge to.

    Invariant: `children` is empty exactly when `problems` is not (nothing is applied from a spec
    that cannot be built; what exists keeps running).
    """

    children: tuple[JsonObject, ...] = ()
    problems: tuple[Problem, ...] = ()
    runconfig: RunConfig | None = None
    tool_config_hash: str | None = None
    replicas_capped: bool = False
    """`replicas` > 1 on a stdio server, capped at 1 (one process cannot be shared by two)."""
    condition_problems: Mapping[str, Problem] = field(default_factory=dict)
    """The first problem per condition type, for the status."""


# -- shared metadata ----------------------------------------------------------------------------


def desired_controller_reference(server: MCPServer) -> JsonObject:
    """The one controller ownerReference every child carries (GC deletes them with the server)."""
    if not server.metadata.uid:
        raise ValueError("MCPServer has no metadata.uid: only stored objects have children")
    return {
        "apiVersion": server.api_version,
        "kind": server.kind,
        "name": server_name(server),
        "uid": server.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(
    server: MCPServer,
    name: str,
    *,
    extra_labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> JsonObject:
    # Moorage's own labels win over the user's overrides.
    labels = {**(extra_labels or {}), **mcpserver_labels(server_name(server))}
    meta: JsonObject = {
        "name": name,
        "namespace": server_namespace(server),
        "labels": labels,
        "ownerReferences": [desired_controller_reference(server)],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def proxy_selector(server: str) -> dict[str, str]:
    """Selector of the proxy Deployment's pods (and of the proxy Service)."""
    return {LABEL_MCPSERVER: server, LABEL_COMPONENT: COMPONENT_PROXY_RUNNER}


# -- the children, one builder each -------------------------------------------------------------


def desired_proxy_service_account(server: MCPServer) -> JsonObject:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(server, proxy_runner_name(server_name(server))),
    }


def desired_mcp_service_account(server: MCPServer) -> JsonObject | None:
    """ServiceAccount `<name>-sa` for the MCP pods; None when `spec.serviceAccount` is set."""
    if server.spec.service_account:
        return None
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(server, mcp_service_account_name(server_name(server))),
    }


def desired_role(server: MCPServer) -> JsonObject:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _metadata(server, proxy_runner_name(server_name(server))),
        "rules": desired_proxy_runner_rules(server),
    }


def desired_role_binding(server: MCPServer) -> JsonObject:
    name = proxy_runner_name(server_name(server))
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(server, name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [
            {"kind": "ServiceAccount", "name": name, "namespace": server_namespace(server)}
        ],
    }


def content_checksum(text: str) -> str:
    """SHA-256 of a rendered document (the ConfigMap's `moorage.dev/content-checksum`)."""
    return hashlib.sha256(text.encode()).hexdigest()


def desired_runconfig_configmap(server: MCPServer, *, runconfig: RunConfig) -> JsonObject:
    rendered = render_runconfig_json(runconfig)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(
            server,
            runconfig_configmap_name(server_name(server)),
            annotations={ANNOTATION_CONTENT_CHECKSUM: content_checksum(rendered)},
        ),
        "data": {RUNCONFIG_KEY: rendered},
    }


def proxy_replicas(server: MCPServer) -> int | None:
    """Replicas of the proxy Deployment: None (not managed, HPA-friendly) when unset, at most 1
    for stdio (one backend process cannot be attached by two proxies)."""
    replicas = server.spec.replicas
    if replicas is None:
        return None
    if server.spec.transport == "stdio":
        return min(replicas, 1)
    return replicas


def is_replicas_capped(server: MCPServer) -> bool:
    return proxy_replicas(server) != server.spec.replicas


def _restricted_container_security() -> JsonObject:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": NONROOT_UID,
        "runAsGroup": NONROOT_UID,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _proxy_env(server: MCPServer) -> list[JsonObject]:
    env: list[JsonObject] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    overrides = server.spec.resource_overrides
    deployment = overrides.proxy_deployment if overrides else None
    for var in deployment.env if deployment else ():
        if var.name not in OPERATOR_ENV:
            env.append({"name": var.name, "value": var.value})
    return env


def runconfig_secret_env(runconfig: RunConfig) -> list[JsonObject]:
    """The proxy container's env from Secrets that the RunConfig's shared-state settings name
    (the Redis password): the RunConfig holds only the variable's name."""
    redis = runconfig.session_storage.redis
    password = redis.password if redis is not None else None
    if password is None or password.secret_key_ref is None:
        return []
    ref = password.secret_key_ref
    return [
        {
            "name": password.env,
            "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
        }
    ]


def _probe(*, period: int, failures: int, initial_delay: int = 0) -> JsonObject:
    probe: JsonObject = {
        "httpGet": {"path": HEALTH_PATH, "port": HTTP_PORT_NAME},
        "periodSeconds": period,
        "failureThreshold": failures,
    }
    if initial_delay:
        probe["initialDelaySeconds"] = initial_delay
    return probe


def desired_proxy_pod_template(
    server: MCPServer, *, runconfig: RunConfig, image: str
) -> JsonObject:
    name = server_name(server)
    overrides = server.spec.resource_overrides
    deployment = overrides.proxy_deployment if overrides else None
    pod_meta = deployment.pod_template_metadata_overrides if deployment else None
    labels = {
        **(pod_meta.labels if pod_meta else {}),
        **mcpserver_labels(name),
        **proxy_selector(name),
    }
    annotations = {
        **(pod_meta.annotations if pod_meta else {}),
        ANNOTATION_RUNCONFIG_CHECKSUM: restart_checksum(runconfig),
    }
    container: JsonObject = {
        "name": CONTAINER_PROXYRUNNER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["run", "--config", RUNCONFIG_PATH],
        "ports": [{"name": HTTP_PORT_NAME, "containerPort": server.spec.port, "protocol": "TCP"}],
        "env": _proxy_env(server) + runconfig_secret_env(runconfig),
        "volumeMounts": [
            {
                "name": RUNCONFIG_VOLUME,
                "mountPath": posixpath.dirname(RUNCONFIG_PATH),
                "readOnly": True,
            },
            {"name": TMP_VOLUME, "mountPath": "/tmp"},  # noqa: S108 - an emptyDir, per pod
        ],
        # Ready only once the backend is connected (spec §4.1). Liveness is lenient: the proxy
        # exits by itself when the backend does not come up in time.
        "readinessProbe": _probe(period=5, failures=3),
        "livenessProbe": _probe(period=10, failures=6, initial_delay=30),
        "securityContext": _restricted_container_security(),
    }
    return {
        "metadata": {"labels": labels, "annotations": annotations},
        "spec": {
            "serviceAccountName": proxy_runner_name(name),
            "automountServiceAccountToken": True,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": NONROOT_UID,
                "runAsGroup": NONROOT_UID,
                "fsGroup": NONROOT_UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": [
                {
                    "name": RUNCONFIG_VOLUME,
                    # The whole directory, not a subPath: the kubelet then swaps the file when
                    # the ConfigMap changes and the running proxy picks up live changes.
                    "configMap": {"name": runconfig_configmap_name(name)},
                },
                {"name": TMP_VOLUME, "emptyDir": {}},
            ],
        },
    }


def _strategy(server: MCPServer) -> JsonObject:
    # A stdio backend is one process: two proxies must never attach to it at once. The rolling
    # parameters are set explicitly (not left to defaulting) so that we own them and a switch to
    # Recreate removes them; the apiserver rejects Recreate with rollingUpdate set.
    if server.spec.transport == "stdio":
        return {"type": "Recreate"}
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}


def desired_deployment(server: MCPServer, *, runconfig: RunConfig, image: str) -> JsonObject:
    name = server_name(server)
    overrides = server.spec.resource_overrides
    deployment = overrides.proxy_deployment if overrides else None
    spec: JsonObject = {
        "selector": {"matchLabels": proxy_selector(name)},
        "strategy": _strategy(server),
        "template": desired_proxy_pod_template(server, runconfig=runconfig, image=image),
    }
    replicas = proxy_replicas(server)
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(
            server,
            name,
            extra_labels=deployment.labels if deployment else None,
            annotations=deployment.annotations if deployment else None,
        ),
        "spec": spec,
    }


def desired_proxy_service(server: MCPServer) -> JsonObject:
    name = server_name(server)
    overrides = server.spec.resource_overrides
    service = overrides.proxy_service if overrides else None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(
            server,
            proxy_service_name(name),
            extra_labels=service.labels if service else None,
            annotations=service.annotations if service else None,
        ),
        "spec": {
            "type": "ClusterIP",
            "selector": proxy_selector(name),
            "ports": [
                {
                    "name": HTTP_PORT_NAME,
                    "port": server.spec.port,
                    "targetPort": HTTP_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
            "sessionAffinity": server.spec.session_affinity,
            **_session_affinity_config(server),
        },
    }


def _session_affinity_config(server: MCPServer) -> JsonObject:
    # Set explicitly (the apiserver's default) so that we own it and switching to `None` removes
    # it; the apiserver rejects `sessionAffinity: None` with a ClientIP config left behind.
    if server.spec.session_affinity != "ClientIP":
        return {}
    return {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": CLIENT_IP_TIMEOUT}}}


# -- planning -----------------------------------------------------------------------------------


def plan_mcpserver(
    server: MCPServer, *, settings: PlanningSettings, references: References
) -> ServerPlan:
    """The children of `server`, or the problems that prevent building them."""
    problems: list[Problem] = []
    template_problem = pod_template_problem(server.spec.pod_template_spec)
    if template_problem:
        problems.append(
            Problem(
                MCPServerConditionType.POD_TEMPLATE_VALID,
                "PodTemplateInvalid",
                f"Invalid pod template: {template_problem}",
            )
        )
    resolution = resolve_inputs(server.spec, references=references)
    problems.extend(resolution.problems)
    by_condition: dict[str, Problem] = {}
    for problem in problems:
        if problem.condition is not None:
            by_condition.setdefault(problem.condition, problem)
    capped = is_replicas_capped(server)
    if problems or resolution.inputs is None:
        return ServerPlan(
            problems=tuple(problems), replicas_capped=capped, condition_problems=by_condition
        )
    runconfig = desired_runconfig(
        server, inputs=resolution.inputs, cluster_domain=settings.cluster_domain
    )
    children = [
        desired_proxy_service_account(server),
        desired_role(server),
        desired_role_binding(server),
        desired_mcp_service_account(server),
        desired_runconfig_configmap(server, runconfig=runconfig),
        desired_deployment(server, runconfig=runconfig, image=settings.proxyrunner_image),
        desired_proxy_service(server),
    ]
    return ServerPlan(
        children=tuple(stamp_applied_hash(child) for child in children if child is not None),
        runconfig=runconfig,
        tool_config_hash=resolution.inputs.tool_config_hash,
        replicas_capped=capped,
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


def child_identity(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    """(apiVersion, kind, name) of an object."""
    meta = obj.get("metadata") or {}
    return str(obj.get("apiVersion")), str(obj.get("kind")), str(meta.get("name"))


def is_controlled_by(obj: Mapping[str, Any], *, uid: str) -> bool:
    """Whether `obj`'s controller ownerReference points at the object with `uid`."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("controller") and ref.get("uid") == uid for ref in refs)


def stale_children(
    server: MCPServer, *, desired: Iterable[Mapping[str, Any]], owned: Iterable[JsonObject]
) -> list[JsonObject]:
    """Objects of the `EXCLUSIVE_KINDS` controlled by `server` that are no longer desired
    (e.g. `<name>-sa` after `spec.serviceAccount` was set); the reconciler deletes them."""
    uid = server.metadata.uid or ""
    wanted = {child_identity(obj) for obj in desired}
    stale: list[JsonObject] = []
    for obj in owned:
        identity = child_identity(obj)
        if (identity[0], identity[1]) not in EXCLUSIVE_KINDS:
            continue
        if identity not in wanted and is_controlled_by(obj, uid=uid):
            stale.append(obj)
    return stale
