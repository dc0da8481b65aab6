"""The MCP server's workload as the proxy runner wants it: pure builders of the objects it applies.

For one MCPServer the proxy runner owns a StatefulSet `<name>` (container `mcp`), for HTTP
transports a headless Service `mcp-<name>-headless` and a ClusterIP Service `mcp-<name>` with
ClientIP affinity (the incumbent operator's Service, which its users' tooling points at), and for
a restrictive permission profile a NetworkPolicy `<name>-egress` (spec §3). This module turns a `WorkloadSpec` (the workload part of
the RunConfig) into those objects, decides whether a live object has drifted from them, and reads
readiness and trouble out of live StatefulSets and pods.

Pure: no I/O, no asyncio. The I/O shell is `moorage_proxyrunner.workload.manager`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from moorage_api.constants import (
    ANNOTATION_STDIO_ERA,
    COMPONENT_MCP_SERVER,
    CONTAINER_MCP,
    FIELD_MANAGER_PROXYRUNNER,
    LABEL_COMPONENT,
    MCP_SERVICE_AFFINITY_TIMEOUT,
)
from moorage_api.documents import OutboundNetwork
from moorage_api.mcpserver import StdioEra, Transport
from moorage_api.naming import (
    egress_policy_name,
    headless_service_name,
    mcp_pod_selector,
    mcp_service_name,
    mcpserver_labels,
)
from moorage_api.podpatch import merge_pod_template, validate_pod_template
from moorage_api.podsecurity import PodSecuritySubject
from moorage_api.runconfig import RunConfig, RunConfigPermissionProfile

JsonObject = dict[str, Any]

FIELD_MANAGER: Final = FIELD_MANAGER_PROXYRUNNER
MCP_CONTAINER: Final = CONTAINER_MCP
HTTP_PORT_NAME: Final = "http"
TMP_VOLUME: Final = "tmp"
"""The emptyDir volume mounted at `TMP_MOUNT_PATH` in container `mcp`."""
TMP_MOUNT_PATH: Final = "/tmp"  # noqa: S108 (a path inside the MCP server's container)
DEFAULT_PROFILE_KEY: Final = "profile.json"
"""The ConfigMap key of a permission profile when the reference names none."""


class ProfileError(ValueError):
    """A permission profile cannot be turned into egress rules; the message says why."""


@dataclass(frozen=True, slots=True)
class OwnerRef:
    """The MCPServer that owns everything the proxy runner creates."""

    api_version: str
    kind: str
    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class SecretEnv:
    """One env var of container `mcp` filled from a Secret key (never the value itself)."""

    env_name: str
    secret_name: str
    key: str


@dataclass(frozen=True, slots=True)
class EgressRules:
    """What a permission profile allows out of the MCP pods.

    `allow_all` wins over the lists; with `allow_all` false and both lists empty, nothing may
    leave. `ports` are open to any destination and `cidrs` on any port (as the profile format
    documents its fields).
    """

    allow_all: bool = False
    ports: tuple[int, ...] = ()
    cidrs: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    """Profile fields a NetworkPolicy cannot express (e.g. `allow_host`), to warn about."""


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """The part of the RunConfig that shapes the MCP server's workload.

    Invariant: `name` and `namespace` are the MCPServer's; `env` and `secret_env` names are unique.
    """

    name: str
    namespace: str
    owner: OwnerRef | None
    """None only when the RunConfig has no owner (then nothing is garbage-collected)."""
    image: str
    transport: Transport = "stdio"
    target_port: int = 8080
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    secret_env: tuple[SecretEnv, ...] = ()
    resources: Mapping[str, Any] | None = None
    """`{limits, requests}` for container `mcp`; None leaves the template's."""
    service_account: str | None = None
    pod_template_spec: Mapping[str, Any] | None = None
    backend_replicas: int | None = None
    """StatefulSet replicas for HTTP transports; None leaves the field unmanaged."""
    permission_profile: RunConfigPermissionProfile | None = None
    stdio_era: StdioEra = "handshake"
    leased_ordinals: int | None = None
    """A stdio server whose proxies share sessions through Redis: how many backend pods it
    runs, one per proxy replica, each proxy holding the Lease of one ordinal (the RunConfig's
    `proxy_replicas`, at least 1). None: one pod, attached by the proxy without a Lease."""

    @property
    def is_stdio(self) -> bool:
        return self.transport == "stdio"


def leased_ordinals_of(rc: RunConfig) -> int | None:
    """`WorkloadSpec.leased_ordinals` of a RunConfig: for a stdio server with Redis session
    storage, its `proxy_replicas` (at least 1); None otherwise."""
    if rc.transport != "stdio" or rc.session_storage.type != "redis":
        return None
    return max(rc.proxy_replicas or 1, 1)


def workload_spec_from_runconfig(rc: RunConfig) -> WorkloadSpec:
    """The workload part of a RunConfig; `PodPatchError` if its pod template is unusable."""
    if rc.pod_template_spec is not None:
        validate_pod_template(rc.pod_template_spec, source="pod_template_spec")
    resources: dict[str, Any] | None = None
    if rc.resources is not None:
        dumped = rc.resources.model_dump(mode="json", by_alias=True)
        resources = {k: v for k, v in dumped.items() if v} or None
    owner = (
        OwnerRef(
            api_version=rc.owner.api_version,
            kind=rc.owner.kind,
            name=rc.owner.name,
            uid=rc.owner.uid,
        )
        if rc.owner is not None
        else None
    )
    return WorkloadSpec(
        name=rc.name,
        namespace=rc.namespace,
        owner=owner,
        image=rc.image,
        transport=rc.transport,
        target_port=rc.target_port,
        args=tuple(rc.args),
        env=tuple((e.name, e.value) for e in rc.env),
        secret_env=tuple(
            SecretEnv(env_name=e.name, secret_name=e.secret_key_ref.name, key=e.secret_key_ref.key)
            for e in rc.secret_env
        ),
        resources=resources,
        service_account=rc.service_account,
        pod_template_spec=rc.pod_template_spec,
        backend_replicas=rc.backend_replicas,
        permission_profile=rc.permission_profile,
        stdio_era=rc.stdio_era,
        leased_ordinals=leased_ordinals_of(rc),
    )


@dataclass(frozen=True, slots=True)
class DesiredWorkload:
    """Everything to apply; a None object is one that must not exist."""

    statefulset: JsonObject
    service: JsonObject | None
    """The headless Service `mcp-<name>-headless`."""
    mcp_service: JsonObject | None
    """The ClusterIP Service `mcp-<name>`."""
    network_policy: JsonObject | None


# -- names and metadata -----------------------------------------------------------------------


def build_labels(name: str) -> dict[str, str]:
    """The labels of every object (and pod) the proxy runner creates for MCPServer `name`."""
    return {**mcpserver_labels(name), LABEL_COMPONENT: COMPONENT_MCP_SERVER}


def build_selector(name: str) -> dict[str, str]:
    """The StatefulSet's (immutable) pod selector."""
    return mcp_pod_selector(name)


def build_label_selector(name: str) -> str:
    """`build_selector` as a `labelSelector` query string."""
    return ",".join(f"{k}={v}" for k, v in sorted(build_selector(name).items()))


def build_owner_reference(owner: OwnerRef) -> JsonObject:
    # No blockOwnerDeletion: setting it needs `update` on mcpservers/finalizers where the
    # OwnerReferencesPermissionEnforcement plugin runs, and the proxy runner's Role lacks it.
    # The garbage collector removes the children either way.
    return {
        "apiVersion": owner.api_version,
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
    }


def _metadata(spec: WorkloadSpec, name: str) -> JsonObject:
    meta: JsonObject = {
        "name": name,
        "namespace": spec.namespace,
        "labels": build_labels(spec.name),
    }
    if spec.owner is not None:
        meta["ownerReferences"] = [build_owner_reference(spec.owner)]
    return meta


# -- the pod template ------------------------------------------------------------------------


def build_base_template(spec: WorkloadSpec) -> JsonObject:
    """What the pod template holds before any customisation (labels, ServiceAccount)."""
    pod_spec: JsonObject = {"containers": [{"name": MCP_CONTAINER}]}
    if spec.service_account:
        pod_spec["serviceAccountName"] = spec.service_account
    return {"metadata": {"labels": build_labels(spec.name)}, "spec": pod_spec}


def build_restricted_defaults(*, privileged: bool = False) -> JsonObject:
    """Pod Security "restricted" settings and a writable `/tmp`, merged over the base template.

    They sit below `pod_template_spec`, so that an image that must run as root can opt out
    (`runAsNonRoot: false`); how far an opt-out may go is still judged by
    `moorage_api.podsecurity` (beyond baseline needs an MCPTenant) and by the namespace's own Pod
    Security level, which the apiserver enforces when the StatefulSet controller creates the pod.
    A `privileged` container (an MCPTenant may allow one) gets no `allowPrivilegeEscalation:
    false`: the apiserver refuses that pair as contradictory.
    """
    security: JsonObject = {"capabilities": {"drop": ["ALL"]}}
    if not privileged:
        security["allowPrivilegeEscalation"] = False
    container: JsonObject = {
        "name": MCP_CONTAINER,
        "securityContext": security,
        # Many servers write temporary files; a read-only root filesystem must not stop them.
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": TMP_MOUNT_PATH}],
    }
    return {
        "spec": {
            "securityContext": {
                # Enforced by the kubelet, which refuses to start an image whose user is root or
                # not numeric (our example images run as 65534).
                "runAsNonRoot": True,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": [{"name": TMP_VOLUME, "emptyDir": {}}],
        }
    }


def build_required_template(spec: WorkloadSpec) -> JsonObject:
    """Moorage's settings, merged last so that no customisation can override them."""
    container: JsonObject = {"name": MCP_CONTAINER, "image": spec.image}
    if spec.args:
        container["args"] = list(spec.args)
    # The nulls remove a template's `valueFrom`/`value` under the same name: an env var cannot
    # have both, and ours must win.
    env: list[JsonObject] = [{"name": k, "value": v, "valueFrom": None} for k, v in spec.env]
    env.extend(
        {
            "name": s.env_name,
            "value": None,
            "valueFrom": {"secretKeyRef": {"name": s.secret_name, "key": s.key}},
        }
        for s in spec.secret_env
    )
    if env:
        container["env"] = env
    if spec.resources:
        container["resources"] = dict(spec.resources)
    if spec.is_stdio:
        # The proxy attaches to the container's stdin; it must stay open across attachments.
        container.update(stdin=True, stdinOnce=False, tty=False)
    else:
        container["ports"] = [
            {"name": HTTP_PORT_NAME, "containerPort": spec.target_port, "protocol": "TCP"}
        ]
    metadata: JsonObject = {"labels": build_labels(spec.name)}
    if spec.is_stdio and spec.stdio_era != "handshake":
        # Server-side apply drops the annotation again when the era goes back to the default:
        # either change rolls the pod, and the new process is probed (or not) afresh.
        metadata["annotations"] = {ANNOTATION_STDIO_ERA: spec.stdio_era}
    return {"metadata": metadata, "spec": {"containers": [container]}}


def build_pod_template(
    spec: WorkloadSpec, *, pod_patch: Mapping[str, Any] | None = None
) -> JsonObject:
    """Base template, restricted defaults, `pod_template_spec`, the `--k8s-pod-patch`, then
    Moorage's own settings.

    The inputs are assumed validated (`podpatch.validate_pod_template`).
    """
    privileged = any(
        _is_mcp_privileged(layer) for layer in (spec.pod_template_spec, pod_patch) if layer
    )
    defaults = build_restricted_defaults(privileged=privileged)
    return _merge_layers(spec, pod_patch=pod_patch, defaults=defaults)


def _is_mcp_privileged(layer: Mapping[str, Any]) -> bool:
    containers = (layer.get("spec") or {}).get("containers") or []
    return any(
        isinstance(c, Mapping)
        and c.get("name") == MCP_CONTAINER
        and (c.get("securityContext") or {}).get("privileged") is True
        for c in containers
    )


def _merge_layers(
    spec: WorkloadSpec, *, pod_patch: Mapping[str, Any] | None, defaults: Mapping[str, Any] | None
) -> JsonObject:
    template = build_base_template(spec)
    for layer in (defaults, spec.pod_template_spec, pod_patch):
        if layer:
            template = merge_pod_template(template, layer)
    return merge_pod_template(template, build_required_template(spec))


def pod_security_subject(
    spec: WorkloadSpec, *, pod_patch: Mapping[str, Any] | None = None
) -> PodSecuritySubject:
    """The pod the StatefulSet would run, as `moorage_api.podsecurity` judges it.

    The whole merged template is judged, not the RunConfig's fields one by one: the proxy runner
    applies whatever the RunConfig ConfigMap says, and a namespace user may have edited it past
    the webhook. Secrets of `secret_env` count as declared (they mirror `spec.secrets`). The
    restricted defaults are left out: they only tighten the pod, and without them the list
    indexes in a refusal's path are those of the user's `podTemplateSpec`.
    """
    return PodSecuritySubject(
        name=spec.name,
        namespace=spec.namespace,
        pod_template=_merge_layers(spec, pod_patch=pod_patch, defaults=None),
        secrets=frozenset(s.secret_name for s in spec.secret_env),
    )


# -- the objects -----------------------------------------------------------------------------


def build_statefulset(
    spec: WorkloadSpec, *, pod_patch: Mapping[str, Any] | None = None
) -> JsonObject:
    sts_spec: JsonObject = {
        # Immutable once created: always the headless Service's name, so that a change of
        # transport never needs the StatefulSet recreated.
        "serviceName": headless_service_name(spec.name),
        "selector": {"matchLabels": build_selector(spec.name)},
        # Pods are interchangeable replicas of one server: start and replace them all at once.
        "podManagementPolicy": "Parallel",
        "template": build_pod_template(spec, pod_patch=pod_patch),
    }
    if spec.is_stdio:
        # One process is shared by every client of a proxy through the attached stdin; proxies
        # sharing sessions through Redis each have their own (`leased_ordinals`).
        sts_spec["replicas"] = spec.leased_ordinals or 1
    elif spec.backend_replicas is not None:
        sts_spec["replicas"] = spec.backend_replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(spec, spec.name),
        "spec": sts_spec,
    }


def _http_service_ports(spec: WorkloadSpec) -> list[JsonObject]:
    """The MCP server's port, under the same number, on a Service in front of its pods."""
    return [
        {
            "name": HTTP_PORT_NAME,
            "port": spec.target_port,
            "targetPort": spec.target_port,
            "protocol": "TCP",
        }
    ]


def build_headless_service(spec: WorkloadSpec) -> JsonObject | None:
    """The headless Service giving each HTTP MCP pod a DNS name; None for stdio."""
    if spec.is_stdio:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(spec, headless_service_name(spec.name)),
        "spec": {
            "clusterIP": "None",
            "selector": build_selector(spec.name),
            "ports": _http_service_ports(spec),
        },
    }


def build_mcp_service(spec: WorkloadSpec) -> JsonObject | None:
    """The ClusterIP Service `mcp-<name>` for HTTP MCP pods, ClientIP affinity; None for stdio.

    The proxy runner itself reaches each pod by its own DNS name (`build_backend_urls`); this
    Service is for clients that go straight to the MCP server, bypassing the proxy.
    """
    if spec.is_stdio:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(spec, mcp_service_name(spec.name)),
        "spec": {
            "type": "ClusterIP",
            "selector": build_selector(spec.name),
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": MCP_SERVICE_AFFINITY_TIMEOUT}},
            "ports": _http_service_ports(spec),
        },
    }


def build_network_policy(spec: WorkloadSpec, *, egress: EgressRules | None) -> JsonObject | None:
    """NetworkPolicy `<name>-egress` for the MCP pods; None when egress is unrestricted."""
    if egress is None:
        return None
    rules: list[JsonObject]
    if egress.allow_all:
        rules = [{}]
    elif not egress.ports and not egress.cidrs:
        rules = []
    else:
        rules = []
        if egress.ports:
            # A profile's port means the port whatever the protocol (DNS needs UDP).
            rules.append(
                {
                    "ports": [
                        {"protocol": proto, "port": p}
                        for p in egress.ports
                        for proto in ("TCP", "UDP")
                    ]
                }
            )
        if egress.cidrs:
            rules.append({"to": [{"ipBlock": {"cidr": c}} for c in egress.cidrs]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(spec, egress_policy_name(spec.name)),
        "spec": {
            "podSelector": {"matchLabels": build_selector(spec.name)},
            "policyTypes": ["Egress"],
            "egress": rules,
        },
    }


def needs_profile_document(profile: RunConfigPermissionProfile | None) -> bool:
    """Whether the egress rules must be read from the profile's ConfigMap: a configMap profile
    the RunConfig does not carry resolved (`outbound`)."""
    return profile is not None and profile.type == "configMap" and profile.outbound is None


def profile_document_key(profile: RunConfigPermissionProfile) -> str:
    return profile.key or DEFAULT_PROFILE_KEY


def compute_egress(
    profile: RunConfigPermissionProfile | None, *, document: OutboundNetwork | None = None
) -> EgressRules | None:
    """Egress rules for a permission profile; None means unrestricted (no NetworkPolicy).

    Builtin `none` denies all egress, builtin `network` restricts nothing; a configMap profile
    uses the `outbound` the RunConfig carries, else `document` (read from its ConfigMap).
    """
    if profile is None:
        return None
    if profile.type == "builtin":
        if profile.name == "network":
            return None
        if profile.name == "none":
            return EgressRules()
        raise ProfileError(
            f"unknown builtin permission profile {profile.name!r} (expected 'none' or 'network')"
        )
    outbound = profile.outbound or document
    if outbound is None:
        raise ProfileError(
            f"permission profile ConfigMap {profile.name!r} (key "
            f"{profile_document_key(profile)!r}) has not been read"
        )
    return egress_from_outbound(outbound, source=f"permission profile {profile.name!r}")


def egress_from_outbound(outbound: OutboundNetwork, *, source: str) -> EgressRules:
    """`network.outbound` of a profile as egress rules; CIDRs normalised (host bits dropped)."""
    cidrs: list[str] = []
    for cidr in outbound.allow_cidr:
        try:
            cidrs.append(str(ipaddress.ip_network(cidr.strip(), strict=False)))
        except ValueError:
            raise ProfileError(
                f"{source}: network.outbound.allow_cidr: {cidr!r} is not a CIDR (e.g. 10.0.0.0/8)"
            ) from None
    return EgressRules(
        allow_all=outbound.insecure_allow_all,
        ports=tuple(dict.fromkeys(outbound.allow_port)),
        cidrs=tuple(dict.fromkeys(cidrs)),
        ignored=("network.outbound.allow_host",) if outbound.allow_host else (),
    )


def build_backend_urls(
    spec: WorkloadSpec, *, replicas: int, cluster_domain: str = "cluster.local"
) -> list[str]:
    """The MCP endpoint of each HTTP backend pod, by its DNS name under the headless Service.

    One URL per StatefulSet ordinal, so that a session can stay pinned to the pod that created
    it: `http://<name>-<i>.mcp-<name>-headless.<namespace>.svc.<domain>:<target_port>/mcp` (or
    `/sse` for the legacy SSE transport).
    """
    if spec.is_stdio:
        raise ValueError("a stdio MCP server has no HTTP endpoint")
    path = "/sse" if spec.transport == "sse" else "/mcp"
    service = headless_service_name(spec.name)
    return [
        f"http://{spec.name}-{i}.{service}.{spec.namespace}.svc.{cluster_domain}:{spec.target_port}{path}"
        for i in range(replicas)
    ]


def desired_workload(
    spec: WorkloadSpec,
    *,
    pod_patch: Mapping[str, Any] | None = None,
    egress: EgressRules | None = None,
) -> DesiredWorkload:
    """The objects for `spec`; `egress` comes from the permission profile (None = open)."""
    return DesiredWorkload(
        statefulset=build_statefulset(spec, pod_patch=pod_patch),
        service=build_headless_service(spec),
        mcp_service=build_mcp_service(spec),
        network_policy=build_network_policy(spec, egress=egress),
    )


# -- reading live objects ---------------------------------------------------------------------


def is_subset(desired: Any, live: Any) -> bool:
    """Whether every field of `desired` is in `live` with the same value.

    Defaults the apiserver fills in (`protocol`, `terminationMessagePath`, ...) are extra fields
    of `live` and do not count; a zero value (`false`, `0`, `""`, empty list or map) matches an
    absent field, because the apiserver omits them; lists compare element by element in order.
    """
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            is_subset(v, live[k]) if k in live else _is_zero(v) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) >= len(desired)
            and all(is_subset(d, lv) for d, lv in zip(desired, live, strict=False))
        )
    return bool(desired == live)


def _is_zero(value: Any) -> bool:
    """`false`, `0`, `""`, `[]`, `{}` or null: what the apiserver leaves out of an object."""
    return not value


def has_drifted(desired: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    """Whether `live` lost or changed anything we apply (spec, labels, owner)."""
    want_meta = desired.get("metadata") or {}
    live_meta = live.get("metadata") or {}
    if live_meta.get("deletionTimestamp"):
        return True
    return not (
        is_subset(want_meta.get("labels") or {}, live_meta.get("labels") or {})
        and is_subset(
            want_meta.get("ownerReferences") or [], live_meta.get("ownerReferences") or []
        )
        and is_subset(desired.get("spec") or {}, live.get("spec") or {})
    )


def wanted_replicas(statefulset: Mapping[str, Any]) -> int:
    replicas = (statefulset.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def is_statefulset_ready(statefulset: Mapping[str, Any]) -> bool:
    """The controller has seen the current spec and, unless scaled to zero, a pod is ready."""
    meta = statefulset.get("metadata") or {}
    status = statefulset.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return False
    wanted = wanted_replicas(statefulset)
    return wanted == 0 or int(status.get("readyReplicas") or 0) >= 1


def is_pod_ready(pod: Mapping[str, Any]) -> bool:
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    if meta.get("deletionTimestamp") or status.get("phase") != "Running":
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def pod_ordinal(pod: Mapping[str, Any]) -> int:
    """The StatefulSet ordinal of a pod (`<name>-<n>`); large for names without one."""
    name = str((pod.get("metadata") or {}).get("name") or "")
    _, _, suffix = name.rpartition("-")
    return int(suffix) if suffix.isdigit() else 1 << 30


def ready_pods(pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The ready pods, lowest ordinal first (the stdio backend attaches to the first)."""
    return sorted((p for p in pods if is_pod_ready(p)), key=lambda p: (pod_ordinal(p), _name(p)))


def describe_pod_problems(pods: Sequence[Mapping[str, Any]]) -> list[str]:
    """One sentence per pod saying why it is not ready, for the readiness-timeout log."""
    if not pods:
        return ["no pod of the StatefulSet exists (see its events: quota, admission, ...)"]
    problems: list[str] = []
    for pod in sorted(pods, key=_name):
        if is_pod_ready(pod):
            continue
        status = pod.get("status") or {}
        reasons: list[str] = []
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            reasons.append("terminating")
        for cond in status.get("conditions") or []:
            if cond.get("status") != "True" and cond.get("type") == "PodScheduled":
                reasons.append(f"not scheduled: {cond.get('message') or cond.get('reason')}")
        for cs in [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]:
            state = cs.get("state") or {}
            waiting = state.get("waiting") or {}
            terminated = state.get("terminated") or {}
            if waiting.get("reason"):
                detail = f": {waiting['message']}" if waiting.get("message") else ""
                reasons.append(f"container {cs.get('name')} waiting ({waiting['reason']}){detail}")
            elif terminated:
                reasons.append(
                    f"container {cs.get('name')} terminated "
                    f"({terminated.get('reason') or 'exit ' + str(terminated.get('exitCode'))})"
                )
        if not reasons:
            reasons.append(f"phase {status.get('phase') or 'unknown'}, not ready")
        problems.append(f"pod {_name(pod)}: " + "; ".join(reasons))
    return problems


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")
