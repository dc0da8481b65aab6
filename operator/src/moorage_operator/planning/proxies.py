"""The proxy runner's children, shared by every kind that runs one (MCPServer, MCPRemoteProxy,
VirtualMCPServer).

Every kind gets a ServiceAccount, a Role and RoleBinding for the proxy runner, a ConfigMap holding
its RunConfig, a Deployment running it, a ClusterIP Service in front of it and, with more than one
replica, a PodDisruptionBudget letting one proxy pod go at a time. What differs between the kinds
(names, labels, the Role's rules, the proxy's extra env, replicas, strategy) is passed in; the
shape of each object (metadata, ownerReference, probes, restricted security, the RunConfig volume
and checksum, the downward-API env, the grace period that covers the drain) is built here, once.
So is what the shared-state settings (`sessionStorage`) add: the Redis password env from its
Secret and the CA ConfigMap the proxy reads.

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from moorage_api.constants import (
    ANNOTATION_CONTENT_CHECKSUM,
    ANNOTATION_RUNCONFIG_CHECKSUM,
    CONTAINER_PROXYRUNNER,
    RUNCONFIG_KEY,
    RUNCONFIG_PATH,
)
from moorage_api.podpatch import merge_pod_template
from moorage_api.runconfig import RunConfig, SecretKeyRef, render_runconfig_json, restart_checksum
from moorage_api.sessionstorage import SessionStorage
from moorage_operator.planning.problems import Problem

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

OPERATOR_ENV: Final = ("POD_NAME", "POD_NAMESPACE", "POD_IP")
"""Env names the operator sets on every proxyrunner container (downward API); overrides cannot
replace them. `POD_IP` is the address other replicas reach this one at (its advertise address),
`POD_NAME` the holder of the Leases a stdio server's proxy takes."""

TERMINATION_GRACE_SECONDS: Final = 30
"""The proxy pod's grace period: it covers the pre-stop pause and the proxy runner's drain on
SIGTERM (10 s by default) with room for ending streams and releasing sessions."""
PRE_STOP_SLEEP_SECONDS: Final = 5
"""How long a deleted proxy pod keeps serving as before: Services stop sending it new
connections only once kube-proxy (and any balancer in front) has seen it terminating, which
takes a moment; a pod that drained and closed at once would refuse those connections."""


# Kinds the operator alone creates for an owner; one of them that is owned by it but no longer
# desired is deleted. Services are not listed: an MCPServer's proxy runner creates some too.
EXCLUSIVE_KINDS: Final = frozenset(
    {
        ("v1", "ServiceAccount"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("v1", "ConfigMap"),
        ("apps/v1", "Deployment"),
        ("policy/v1", "PodDisruptionBudget"),
    }
)


@dataclass(frozen=True, slots=True)
class OwnerPlan:
    """What a reconcile of one proxy runner's owner should converge to.

    Invariant: `children` is empty exactly when `problems` is not (nothing is applied from a spec
    that cannot be built; what exists keeps running).
    """

    children: tuple[JsonObject, ...] = ()
    problems: tuple[Problem, ...] = ()
    runconfig: RunConfig | None = None
    tool_config_hash: str | None = None
    condition_problems: Mapping[str, Problem] = field(default_factory=dict)
    """The first problem per condition type, for the status."""
    group_found: bool = True
    """The MCPGroup `groupRef` names exists (or there is no `groupRef`)."""


@dataclass(frozen=True, slots=True)
class ChildOwner:
    """The object whose children are built: what their metadata says about it."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str
    """Non-empty: only stored objects have children."""
    labels: Mapping[str, str]
    """Labels on every child; they win over the user's label overrides."""
    selector: Mapping[str, str]
    """Selector of the proxy pods (Deployment and Service); a subset of their labels."""


@dataclass(frozen=True, slots=True)
class ProxyPod:
    """What the kinds' proxy pods differ in."""

    service_account: str
    runconfig_configmap: str
    port: int
    env: Sequence[JsonObject] = ()
    """Env after the `OPERATOR_ENV` (none of them named so)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """The user's pod labels; ours win."""
    annotations: Mapping[str, str] = field(default_factory=dict)
    """The user's pod annotations; the RunConfig checksum wins."""
    resources: Mapping[str, Any] | None = None
    """Compute resources of the `proxyrunner` container (None: not set)."""


def rule(group: str, resource: str, verbs: Iterable[str], names: Iterable[str]) -> JsonObject:
    """An RBAC rule limited to the objects named."""
    return {
        "apiGroups": [group],
        "resources": [resource],
        "resourceNames": sorted(set(names)),
        "verbs": list(verbs),
    }


def controller_reference(owner: ChildOwner) -> JsonObject:
    """The one controller ownerReference every child carries (GC deletes them with the owner)."""
    if not owner.uid:
        raise ValueError(f"{owner.kind} has no metadata.uid: only stored objects have children")
    target = {"apiVersion": owner.api_version, "kind": owner.kind, "name": owner.name}
    return {**target, "uid": owner.uid, "controller": True, "blockOwnerDeletion": True}


def child_metadata(
    owner: ChildOwner,
    name: str,
    *,
    extra_labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> JsonObject:
    # Moorage's own labels win over the user's overrides.
    meta: JsonObject = {
        "name": name,
        "namespace": owner.namespace,
        "labels": {**(extra_labels or {}), **owner.labels},
        "ownerReferences": [controller_reference(owner)],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def desired_service_account(owner: ChildOwner, name: str) -> JsonObject:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": child_metadata(owner, name)}


def desired_role(owner: ChildOwner, name: str, *, rules: list[JsonObject]) -> JsonObject:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": child_metadata(owner, name),
        "rules": rules,
    }


def desired_role_binding(owner: ChildOwner, name: str) -> JsonObject:
    """Binds Role `name` to ServiceAccount `name`."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": child_metadata(owner, name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": owner.namespace}],
    }


def content_checksum(text: str) -> str:
    """SHA-256 of a rendered document (the ConfigMap's `moorage.dev/content-checksum`)."""
    return hashlib.sha256(text.encode()).hexdigest()


def desired_runconfig_configmap(
    owner: ChildOwner, name: str, *, runconfig: RunConfig
) -> JsonObject:
    rendered = render_runconfig_json(runconfig)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(
            owner, name, annotations={ANNOTATION_CONTENT_CHECKSUM: content_checksum(rendered)}
        ),
        "data": {RUNCONFIG_KEY: rendered},
    }


def secret_env(name: str, ref: SecretKeyRef) -> JsonObject:
    """A container env var taking its value from a Secret key (the value never passes us)."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def runconfig_secret_env(runconfig: RunConfig) -> list[JsonObject]:
    """The proxy container's env from Secrets that the RunConfig's shared-state settings name
    (the Redis password): the RunConfig holds only the variable's name."""
    redis = runconfig.session_storage.redis
    password = redis.password if redis is not None else None
    if password is None or password.secret_key_ref is None:
        return []
    return [secret_env(password.env, password.secret_key_ref)]


def session_storage_config_maps(storage: SessionStorage) -> list[str]:
    """The ConfigMaps the proxy reads for `storage`: the Redis CA bundle, if one is named."""
    redis = storage.redis
    if redis is None or redis.tls is None or redis.tls.ca_config_map_ref is None:
        return []
    return [redis.tls.ca_config_map_ref.name]


def restricted_container_security() -> JsonObject:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": NONROOT_UID,
        "runAsGroup": NONROOT_UID,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


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
    owner: ChildOwner, *, pod: ProxyPod, runconfig: RunConfig, image: str
) -> JsonObject:
    """The proxy runner's pod: its RunConfig mounted, restricted security, health probes, and
    the RunConfig's restart checksum so that a change needing a restart rolls the pods."""
    labels = {**pod.labels, **owner.labels, **owner.selector}
    annotations = {**pod.annotations, ANNOTATION_RUNCONFIG_CHECKSUM: restart_checksum(runconfig)}
    env: list[JsonObject] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        *pod.env,
    ]
    container: JsonObject = {
        "name": CONTAINER_PROXYRUNNER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["run", "--config", RUNCONFIG_PATH],
        "ports": [{"name": HTTP_PORT_NAME, "containerPort": pod.port, "protocol": "TCP"}],
        "env": env,
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
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SLEEP_SECONDS}}},
        "securityContext": restricted_container_security(),
    }
    if pod.resources:
        container["resources"] = dict(pod.resources)
    return {
        "metadata": {"labels": labels, "annotations": annotations},
        "spec": {
            "serviceAccountName": pod.service_account,
            "automountServiceAccountToken": True,
            "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
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
                    "configMap": {"name": pod.runconfig_configmap},
                },
                {"name": TMP_VOLUME, "emptyDir": {}},
            ],
        },
    }


ROLLING_UPDATE: Final = {
    "type": "RollingUpdate",
    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
}
"""Set explicitly (not left to defaulting) so that we own it and a switch to Recreate removes it;
the apiserver rejects Recreate with rollingUpdate set."""


def desired_proxy_deployment(
    owner: ChildOwner,
    name: str,
    *,
    template: JsonObject,
    replicas: int | None,
    strategy: Mapping[str, Any] = ROLLING_UPDATE,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> JsonObject:
    """`replicas` None: not managed (HPA-friendly)."""
    spec: JsonObject = {
        "selector": {"matchLabels": dict(owner.selector)},
        "strategy": dict(strategy),
        "template": template,
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(owner, name, extra_labels=labels, annotations=annotations),
        "spec": spec,
    }


def desired_proxy_disruption_budget(
    owner: ChildOwner, name: str, *, replicas: int | None
) -> JsonObject | None:
    """PodDisruptionBudget `name` (the Deployment's) letting one proxy pod go at a time, for
    more than one replica; None otherwise (one replica: an eviction must not be blocked)."""
    if replicas is None or replicas <= 1:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": child_metadata(owner, name),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(owner.selector)}},
    }


def desired_proxy_service(
    owner: ChildOwner,
    name: str,
    *,
    port: int,
    session_affinity: str,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> JsonObject:
    # The ClientIP config is set explicitly (the apiserver's default) so that we own it and
    # switching to `None` removes it; the apiserver rejects `None` with a config left behind.
    affinity: JsonObject = {"sessionAffinity": session_affinity}
    if session_affinity == "ClientIP":
        affinity["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": CLIENT_IP_TIMEOUT}}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(owner, name, extra_labels=labels, annotations=annotations),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(owner.selector),
            "ports": [
                {
                    "name": HTTP_PORT_NAME,
                    "port": port,
                    "targetPort": HTTP_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
            **affinity,
        },
    }


def child_identity(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    """(apiVersion, kind, name) of an object."""
    meta = obj.get("metadata") or {}
    return str(obj.get("apiVersion")), str(obj.get("kind")), str(meta.get("name"))


def is_controlled_by(obj: Mapping[str, Any], *, uid: str) -> bool:
    """Whether `obj`'s controller ownerReference points at the object with `uid`."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("controller") and ref.get("uid") == uid for ref in refs)


def stale_owned(
    uid: str, *, desired: Iterable[Mapping[str, Any]], owned: Iterable[JsonObject]
) -> list[JsonObject]:
    """Objects of the `EXCLUSIVE_KINDS` controlled by the owner with `uid` that are no longer
    desired; the reconciler deletes them."""
    wanted = {child_identity(obj) for obj in desired}
    stale: list[JsonObject] = []
    for obj in owned:
        identity = child_identity(obj)
        if (identity[0], identity[1]) not in EXCLUSIVE_KINDS:
            continue
        if identity not in wanted and is_controlled_by(obj, uid=uid):
            stale.append(obj)
    return stale


@dataclass(frozen=True, slots=True)
class StandaloneProxy:
    """A proxy runner that is the whole of what its owner runs (a remote proxy, a virtual
    server): no MCP workload, one name for its ServiceAccount, Role, RoleBinding and
    Deployment."""

    name: str
    runconfig_configmap: str
    service: str
    port: int
    replicas: int | None
    session_affinity: str
    rules: Sequence[JsonObject]
    env: Sequence[JsonObject] = ()
    resources: Mapping[str, Any] | None = None
    pod_template_spec: Mapping[str, Any] | None = None
    """The user's PodTemplateSpec: applied first, with the proxy's own pod merged on top."""


def desired_standalone_proxy_children(
    owner: ChildOwner, proxy: StandaloneProxy, *, runconfig: RunConfig, image: str
) -> list[JsonObject]:
    """The children of a standalone proxy, in apply order."""
    pod = ProxyPod(
        service_account=proxy.name,
        runconfig_configmap=proxy.runconfig_configmap,
        port=proxy.port,
        env=[*proxy.env, *runconfig_secret_env(runconfig)],
        resources=proxy.resources or None,
    )
    template = desired_proxy_pod_template(owner, pod=pod, runconfig=runconfig, image=image)
    if proxy.pod_template_spec:
        # The user's template first, then the proxy's own pod again on top, as the proxy runner
        # layers an MCPServer's template: what the proxy needs to run cannot be overridden,
        # everything else (scheduling, extra labels, sidecars, env) is the user's.
        template = merge_pod_template(
            merge_pod_template(template, proxy.pod_template_spec), template
        )
    children = [
        desired_service_account(owner, proxy.name),
        desired_role(owner, proxy.name, rules=list(proxy.rules)),
        desired_role_binding(owner, proxy.name),
        desired_runconfig_configmap(owner, proxy.runconfig_configmap, runconfig=runconfig),
        desired_proxy_deployment(owner, proxy.name, template=template, replicas=proxy.replicas),
        desired_proxy_service(
            owner, proxy.service, port=proxy.port, session_affinity=proxy.session_affinity
        ),
        desired_proxy_disruption_budget(owner, proxy.name, replicas=proxy.replicas),
    ]
    return [child for child in children if child is not None]
