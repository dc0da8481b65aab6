"""The MCPTenant kind (spec §2.5, first cut): what an admin allows MCPServers of some namespaces.

Pure: models and schema rules. MCPTenant is cluster-scoped so that only someone with cluster-wide
rights writes it: the tenant role a namespace user gets holds no permission on it. An MCPServer's
pod template is held to the rules of `moorage_api.podsecurity` (Pod Security "baseline" and
Moorage's own ServiceAccount and Secret rules); an MCPTenant whose `spec.namespaces` lists the
MCPServer's namespace relaxes them through `spec.podTemplate`. Several MCPTenants covering one
namespace add up. The webhook and the proxy runner both read MCPTenants; nothing writes a status.
"""

from __future__ import annotations

import posixpath
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import Field, StringConstraints, field_validator

from moorage_api.base import LIST_SET, ApiModel, ObjectMeta, ObjectName, find_duplicates
from moorage_api.constants import KIND_MCPTENANT

NAMESPACE_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
HOST_PATH_PATTERN: Final = r"^/$|^(/([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+))+$"
"""An absolute path without empty, `.` or `..` segments and without a trailing `/`."""

NamespaceName = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=NAMESPACE_PATTERN)
]
HostPathPrefix = Annotated[
    str, StringConstraints(min_length=1, max_length=4096, pattern=HOST_PATH_PATTERN)
]


class PodSecurityRule(StrEnum):
    """One rule of the pod security table (`moorage_api.podsecurity`), as `allow` names it."""

    PRIVILEGED = "Privileged"
    PRIVILEGE_ESCALATION = "PrivilegeEscalation"
    CAPABILITIES = "Capabilities"
    HOST_NAMESPACES = "HostNamespaces"
    HOST_PATH = "HostPath"
    HOST_PORTS = "HostPorts"
    SYSCTLS = "Sysctls"
    PROC_MOUNT = "ProcMount"
    SE_LINUX = "SELinux"
    APP_ARMOR = "AppArmor"
    SECCOMP = "Seccomp"
    HOST_PROBES = "HostProbes"
    SERVICE_ACCOUNT = "ServiceAccount"
    SECRETS = "Secrets"


def _unique(value: list[str]) -> list[str]:
    duplicates = find_duplicates(value)
    if duplicates:
        raise ValueError(f"entries must be unique: {', '.join(duplicates)}")
    return value


def _names(description: str, *, max_length: int = 64) -> Any:
    """A field holding a set of names, empty by default."""
    return Field(
        default_factory=list,
        max_length=max_length,
        json_schema_extra=LIST_SET,
        description=description,
    )


class PodTemplateAllowances(ApiModel):
    """What MCPServers in the covered namespaces may do beyond the default rules."""

    allow: list[PodSecurityRule] = Field(
        default_factory=list,
        max_length=len(PodSecurityRule),
        json_schema_extra=LIST_SET,
        description="Rules waived entirely (for example `Privileged`, `HostNamespaces`).",
    )
    capabilities: list[str] = _names(
        "Linux capabilities that may be added beyond the baseline set (`NET_ADMIN`)."
    )
    host_path_prefixes: list[HostPathPrefix] = _names(
        "Absolute node paths under which `hostPath` volumes may mount (`/var/log`)."
    )
    sysctls: list[str] = _names("Sysctls that may be set beyond the safe set.")
    service_accounts: list[ObjectName] = _names(
        "ServiceAccounts the MCP pods may run as besides `<name>-sa` "
        "(`spec.serviceAccount`, `podTemplateSpec.spec.serviceAccountName`)."
    )
    secrets: list[ObjectName] = _names(
        "Secrets the pod template may mount or reference besides those named in the "
        "MCPServer's `spec.secrets`.",
        max_length=256,
    )

    @field_validator("capabilities", "sysctls", "service_accounts", "secrets")
    @classmethod
    def _unique_names(cls, value: list[str]) -> list[str]:
        return _unique(value)

    @field_validator("host_path_prefixes", mode="before")
    @classmethod
    def _absolute_prefixes(cls, value: object) -> object:
        # Before the pattern (the CRD's own check), to say what is wrong in words.
        if not isinstance(value, list):
            return value
        for prefix in value:
            if not isinstance(prefix, str):
                continue
            normal = posixpath.normpath(prefix)
            if not prefix.startswith("/") or normal != prefix or prefix.startswith("//"):
                raise ValueError(
                    f"{prefix!r} must be an absolute path without '..', '.' or a trailing '/'"
                )
        return _unique(value)


class MCPTenantSpec(ApiModel):
    """The namespaces a tenant covers and what their MCPServers are allowed."""

    namespaces: list[NamespaceName] = Field(
        ...,
        min_length=1,
        max_length=1024,
        json_schema_extra=LIST_SET,
        description="Namespaces whose MCPServers get these allowances.",
    )
    pod_template: PodTemplateAllowances = Field(
        default_factory=PodTemplateAllowances,
        description="Allowances for the MCP server's pod (see the pod security rules).",
    )

    @field_validator("namespaces")
    @classmethod
    def _namespace_names(cls, value: list[str]) -> list[str]:
        return _unique(value)


class MCPTenant(ApiModel):
    """Cluster-scoped allowances for the MCPServers of some namespaces; written by admins only."""

    api_version: Literal["moorage.dev/v1alpha1"] = Field(
        "moorage.dev/v1alpha1", description="`moorage.dev/v1alpha1`."
    )
    kind: Literal["MCPTenant"] = Field(KIND_MCPTENANT, description="`MCPTenant`.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard metadata.")
    spec: MCPTenantSpec = Field(..., description="Desired state.")


def parse_mcptenant(obj: dict[str, Any]) -> MCPTenant:
    """Validate a raw MCPTenant; raises `pydantic.ValidationError`."""
    return MCPTenant.model_validate(obj)
