"""Pod security rules for the MCP server's pod: one table, used by the webhook and the proxy runner.

Pure: no I/O. The proxy runner's ServiceAccount creates the MCP server's StatefulSet, so whoever
may write an MCPServer (or its RunConfig ConfigMap) would otherwise get any pod they describe
without holding any pod rights themselves. These rules keep that pod within the Pod Security
"baseline" level, and add what baseline does not cover but the proxy runner's deputy position
makes dangerous: running as another ServiceAccount, and reading another application's Secrets.

| rule | refused by default | MCPTenant allowance |
|---|---|---|
| Privileged | `securityContext.privileged: true`; Windows `hostProcess` | `allow: [Privileged]` |
| PrivilegeEscalation | `allowPrivilegeEscalation: true` | `allow` |
| Capabilities | `capabilities.add` beyond the baseline set | `capabilities`, `allow` |
| HostNamespaces | `hostNetwork`, `hostPID`, `hostIPC` | `allow` |
| HostPath | `hostPath` volumes | `hostPathPrefixes`, `allow` |
| HostPorts | `ports[].hostPort` other than 0 | `allow` |
| Sysctls | sysctls outside the safe set | `sysctls`, `allow` |
| ProcMount | `procMount` other than `Default` | `allow` |
| SELinux | SELinux `user` or `role`, or a `type` outside the container types | `allow` |
| AppArmor | AppArmor `Unconfined` (field or annotation) | `allow` |
| Seccomp | seccomp `Unconfined` | `allow` |
| HostProbes | a probe's or lifecycle hook's `httpGet.host` / `tcpSocket.host` (the kubelet would connect from the node to any address) | `allow` |
| ServiceAccount | a ServiceAccount other than `<name>-sa` (`spec.serviceAccount`, the template's) | `serviceAccounts`, `allow` |
| Secrets | Secret volumes, projected Secrets, `secretKeyRef`, `envFrom.secretRef`, `imagePullSecrets`, and the Secret references of `csi`, `cephfs`, `rbd`, `iscsi`, `flexVolume`, `scaleIO`, `storageos` and `azureFile` volumes, naming a Secret not in `spec.secrets` | `secrets`, `allow` |

Security contexts are checked on the pod and on every container, init container and ephemeral
container. `check_pod_security` returns every refusal with the field path of the MCPServer it is
about (the proxy runner reports the same paths: the RunConfig mirrors those fields).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ValidationError

from moorage_api.mcptenant import (
    MCPTenant,
    PodSecurityRule,
    PodTemplateAllowances,
    parse_mcptenant,
)
from moorage_api.naming import mcp_service_account_name
from moorage_api.podfields import CONTAINER_LISTS

BASELINE_CAPABILITIES: Final = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
"""Capabilities Pod Security baseline lets a container add (the container runtime's defaults)."""

SAFE_SYSCTLS: Final = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.ping_group_range",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_syncookies",
    }
)
"""Namespaced sysctls Pod Security baseline allows (Kubernetes 1.29+)."""

SELINUX_TYPES: Final = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
"""SELinux types Pod Security baseline allows."""

APPARMOR_ANNOTATION_PREFIX: Final = "container.apparmor.security.beta.kubernetes.io/"
CONTAINER_GROUPS: Final = tuple(CONTAINER_LISTS)
TEMPLATE_PATH: Final = "spec.podTemplateSpec"
POD_PATH: Final = f"{TEMPLATE_PATH}.spec"

JsonObject = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Refusal:
    """One field that the rules refuse and no allowance permits."""

    rule: PodSecurityRule
    path: str
    """Field path in the MCPServer (`spec.podTemplateSpec.spec.hostNetwork`)."""
    message: str
    """What is refused and what would permit it, without the path."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True, slots=True)
class PodSecuritySubject:
    """The parts of an MCPServer (or of its RunConfig) the rules judge."""

    name: str
    """The MCPServer's name: its own ServiceAccount is `<name>-sa`."""
    namespace: str
    pod_template: JsonObject | None = None
    service_account: str | None = None
    """`spec.serviceAccount`."""
    secrets: frozenset[str] = field(default_factory=frozenset)
    """Names of the Secrets in `spec.secrets`: declared by the MCPServer, so not refused."""
    own_service_account: str | None = None
    """The ServiceAccount Moorage creates for the pod; None: an MCPServer's `<name>-sa`."""


@dataclass(frozen=True, slots=True)
class _Judge:
    """Collects refusals for one subject under one set of allowances."""

    subject: PodSecuritySubject
    allowances: PodTemplateAllowances
    refusals: list[Refusal] = field(default_factory=list)

    def refuse(
        self, rule: PodSecurityRule, path: str, what: str, *, allowance: str | None = None
    ) -> None:
        """Record a refusal unless `rule` is waived; `allowance` names a finer way to permit it."""
        if rule in self.allowances.allow:
            return
        allowance = allowance or f"allow: [{rule.value}]"
        self.refusals.append(
            Refusal(
                rule,
                path,
                f"{what}; refused by the pod security rule {rule.value}: an MCPTenant covering "
                f"namespace {self.subject.namespace!r} must allow it ({allowance})",
            )
        )


def _as_dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _containers(pod_spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for group in CONTAINER_GROUPS:
        for index, container in enumerate(_as_list(pod_spec.get(group))):
            yield f"{POD_PATH}.{group}[{index}]", _as_dict(container)


def _is_under(path: str, prefix: str) -> bool:
    normal = posixpath.normpath(path)
    return prefix == "/" or normal == prefix or normal.startswith(prefix + "/")


def _check_security_context(judge: _Judge, context: Mapping[str, Any], path: str) -> None:
    if context.get("privileged") is True:
        judge.refuse(
            PodSecurityRule.PRIVILEGED,
            f"{path}.privileged",
            "a privileged container has full access to its node",
        )
    if _as_dict(context.get("windowsOptions")).get("hostProcess") is True:
        judge.refuse(
            PodSecurityRule.PRIVILEGED,
            f"{path}.windowsOptions.hostProcess",
            "a Windows host process has full access to its node",
        )
    if context.get("allowPrivilegeEscalation") is True:
        judge.refuse(
            PodSecurityRule.PRIVILEGE_ESCALATION,
            f"{path}.allowPrivilegeEscalation",
            "must be false or unset",
        )
    added = _as_list(_as_dict(context.get("capabilities")).get("add"))
    allowed = BASELINE_CAPABILITIES | {c.upper() for c in judge.allowances.capabilities}
    for index, capability in enumerate(added):
        if isinstance(capability, str) and capability.upper() not in allowed:
            judge.refuse(
                PodSecurityRule.CAPABILITIES,
                f"{path}.capabilities.add[{index}]",
                f"capability {capability!r} is beyond the baseline set",
                allowance=f"capabilities: [{capability}]",
            )
    proc_mount = context.get("procMount")
    if proc_mount not in (None, "Default"):
        judge.refuse(
            PodSecurityRule.PROC_MOUNT,
            f"{path}.procMount",
            f"{proc_mount!r} unmasks /proc; must be Default or unset",
        )
    se_linux = _as_dict(context.get("seLinuxOptions"))
    if se_linux.get("type", "") not in SELINUX_TYPES:
        judge.refuse(
            PodSecurityRule.SE_LINUX,
            f"{path}.seLinuxOptions.type",
            f"must be one of {', '.join(sorted(t for t in SELINUX_TYPES if t))} or unset",
        )
    for key in ("user", "role"):
        if se_linux.get(key):
            judge.refuse(
                PodSecurityRule.SE_LINUX,
                f"{path}.seLinuxOptions.{key}",
                "must be unset",
            )
    for rule, key in (
        (PodSecurityRule.APP_ARMOR, "appArmorProfile"),
        (PodSecurityRule.SECCOMP, "seccompProfile"),
    ):
        if _as_dict(context.get(key)).get("type") == "Unconfined":
            judge.refuse(
                rule, f"{path}.{key}.type", "must be RuntimeDefault or Localhost, not Unconfined"
            )


def _check_secret(judge: _Judge, name: object, path: str) -> None:
    if not isinstance(name, str) or not name:
        return
    if name in judge.subject.secrets or name in judge.allowances.secrets:
        return
    judge.refuse(
        PodSecurityRule.SECRETS,
        path,
        f"Secret {name!r} is not named in spec.secrets",
        allowance=f"secrets: [{name}]",
    )


def _check_container(judge: _Judge, container: Mapping[str, Any], path: str) -> None:
    _check_security_context(
        judge, _as_dict(container.get("securityContext")), path + ".securityContext"
    )
    for index, port in enumerate(_as_list(container.get("ports"))):
        host_port = _as_dict(port).get("hostPort")
        if isinstance(host_port, int) and host_port != 0:
            judge.refuse(
                PodSecurityRule.HOST_PORTS,
                f"{path}.ports[{index}].hostPort",
                f"binds port {host_port} of the node",
            )
    for index, var in enumerate(_as_list(container.get("env"))):
        ref = _as_dict(_as_dict(_as_dict(var).get("valueFrom")).get("secretKeyRef"))
        _check_secret(judge, ref.get("name"), f"{path}.env[{index}].valueFrom.secretKeyRef.name")
    for index, source in enumerate(_as_list(container.get("envFrom"))):
        ref = _as_dict(_as_dict(source).get("secretRef"))
        _check_secret(judge, ref.get("name"), f"{path}.envFrom[{index}].secretRef.name")
    for key in PROBES:
        _check_handler_host(judge, _as_dict(container.get(key)), f"{path}.{key}")
    lifecycle = _as_dict(container.get("lifecycle"))
    for key in ("postStart", "preStop"):
        _check_handler_host(judge, _as_dict(lifecycle.get(key)), f"{path}.lifecycle.{key}")


PROBES: Final = ("livenessProbe", "readinessProbe", "startupProbe")


def _check_handler_host(judge: _Judge, handler: Mapping[str, Any], path: str) -> None:
    """Pod Security baseline (1.34+): the kubelet probes the pod, never a host it is given."""
    for action in ("httpGet", "tcpSocket"):
        host = _as_dict(handler.get(action)).get("host")
        if host:
            judge.refuse(
                PodSecurityRule.HOST_PROBES,
                f"{path}.{action}.host",
                f"makes the kubelet connect from the node to {host!r}; leave it unset",
            )


VOLUME_SECRET_REFERENCES: Final = (
    ("csi", "nodePublishSecretRef", "name"),
    ("cephfs", "secretRef", "name"),
    ("rbd", "secretRef", "name"),
    ("iscsi", "secretRef", "name"),
    ("flexVolume", "secretRef", "name"),
    ("scaleIO", "secretRef", "name"),
    ("storageos", "secretRef", "name"),
)
"""Volume sources whose driver reads a Secret of the namespace on the pod's behalf."""


def _check_volumes(judge: _Judge, pod_spec: Mapping[str, Any]) -> None:
    prefixes = judge.allowances.host_path_prefixes
    for index, raw in enumerate(_as_list(pod_spec.get("volumes"))):
        volume = _as_dict(raw)
        path = f"{POD_PATH}.volumes[{index}]"
        host_path = _as_dict(volume.get("hostPath")).get("path")
        if "hostPath" in volume and not (
            isinstance(host_path, str) and any(_is_under(host_path, p) for p in prefixes)
        ):
            judge.refuse(
                PodSecurityRule.HOST_PATH,
                f"{path}.hostPath.path",
                f"mounts {host_path!r} of the node",
                allowance="hostPathPrefixes: [<a prefix of it>]",
            )
        _check_secret(
            judge, _as_dict(volume.get("secret")).get("secretName"), f"{path}.secret.secretName"
        )
        for kind, ref_key, name_key in VOLUME_SECRET_REFERENCES:
            ref = _as_dict(_as_dict(volume.get(kind)).get(ref_key))
            _check_secret(judge, ref.get(name_key), f"{path}.{kind}.{ref_key}.{name_key}")
        _check_secret(
            judge,
            _as_dict(volume.get("azureFile")).get("secretName"),
            f"{path}.azureFile.secretName",
        )
        sources = _as_list(_as_dict(volume.get("projected")).get("sources"))
        for source_index, source in enumerate(sources):
            _check_secret(
                judge,
                _as_dict(_as_dict(source).get("secret")).get("name"),
                f"{path}.projected.sources[{source_index}].secret.name",
            )


def _check_pod_spec(judge: _Judge, pod_spec: Mapping[str, Any]) -> None:
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(flag) is True:
            judge.refuse(
                PodSecurityRule.HOST_NAMESPACES,
                f"{POD_PATH}.{flag}",
                "shares a namespace of the node with the MCP server",
            )
    context = _as_dict(pod_spec.get("securityContext"))
    _check_security_context(judge, context, f"{POD_PATH}.securityContext")
    for index, sysctl in enumerate(_as_list(context.get("sysctls"))):
        name = _as_dict(sysctl).get("name")
        if isinstance(name, str) and name not in SAFE_SYSCTLS | set(judge.allowances.sysctls):
            judge.refuse(
                PodSecurityRule.SYSCTLS,
                f"{POD_PATH}.securityContext.sysctls[{index}].name",
                f"sysctl {name!r} is not in the safe set",
                allowance=f"sysctls: [{name}]",
            )
    for path, container in _containers(pod_spec):
        _check_container(judge, container, path)
    _check_volumes(judge, pod_spec)
    for index, secret in enumerate(_as_list(pod_spec.get("imagePullSecrets"))):
        _check_secret(
            judge, _as_dict(secret).get("name"), f"{POD_PATH}.imagePullSecrets[{index}].name"
        )
    for field_name in ("serviceAccountName", "serviceAccount"):
        _check_service_account(judge, pod_spec.get(field_name), f"{POD_PATH}.{field_name}")


def _check_service_account(judge: _Judge, name: object, path: str) -> None:
    if not isinstance(name, str) or not name:
        return
    own = judge.subject.own_service_account or mcp_service_account_name(judge.subject.name)
    if name == own or name in judge.allowances.service_accounts:
        return
    judge.refuse(
        PodSecurityRule.SERVICE_ACCOUNT,
        path,
        f"the pods run as ServiceAccount {own!r}, which Moorage creates; {name!r} is another",
        allowance=f"serviceAccounts: [{name}]",
    )


def _check_annotations(judge: _Judge, template: Mapping[str, Any]) -> None:
    annotations = _as_dict(_as_dict(template.get("metadata")).get("annotations"))
    for key, value in annotations.items():
        if key.startswith(APPARMOR_ANNOTATION_PREFIX) and value == "unconfined":
            judge.refuse(
                PodSecurityRule.APP_ARMOR,
                f"{TEMPLATE_PATH}.metadata.annotations[{key}]",
                "must be runtime/default or localhost/<profile>, not unconfined",
            )


def check_pod_security(
    subject: PodSecuritySubject, *, allowances: PodTemplateAllowances
) -> list[Refusal]:
    """Every refusal of the rules for `subject`, in field order; empty when the pod may run."""
    judge = _Judge(subject, allowances)
    _check_service_account(judge, subject.service_account, "spec.serviceAccount")
    template = _as_dict(subject.pod_template)
    _check_annotations(judge, template)
    _check_pod_spec(judge, _as_dict(template.get("spec")))
    return judge.refusals


NO_ALLOWANCES: Final = PodTemplateAllowances()


def merge_allowances(allowances: Iterable[PodTemplateAllowances]) -> PodTemplateAllowances:
    """The union of several MCPTenants' allowances for one namespace."""
    merged: dict[str, list[Any]] = {name: [] for name in PodTemplateAllowances.model_fields}
    for one in allowances:
        for name in merged:
            merged[name].extend(v for v in getattr(one, name) if v not in merged[name])
    return PodTemplateAllowances.model_validate(merged)


def parse_tenants(objects: Iterable[Mapping[str, Any]]) -> tuple[list[MCPTenant], list[str]]:
    """The MCPTenants the model accepts, and one line per refused one (which grants nothing)."""
    tenants: list[MCPTenant] = []
    problems: list[str] = []
    for obj in objects:
        try:
            tenants.append(parse_mcptenant(dict(obj)))
        except ValidationError as exc:
            name = _as_dict(obj.get("metadata")).get("name")
            problems.append(f"MCPTenant {name!r}: {str(exc).splitlines()[0]}")
    return tenants, problems


def allowances_by_namespace(tenants: Iterable[MCPTenant]) -> dict[str, PodTemplateAllowances]:
    """Namespace → the merged allowances of every MCPTenant covering it."""
    covering: dict[str, list[PodTemplateAllowances]] = {}
    for tenant in tenants:
        for namespace in tenant.spec.namespaces:
            covering.setdefault(namespace, []).append(tenant.spec.pod_template)
    return {namespace: merge_allowances(each) for namespace, each in covering.items()}
