"""The VirtualMCPServer kind: one MCP endpoint aggregating the members of an MCPGroup.

Pure: models and the rules the schema can state. The backends are the group's MCPServers and
MCPRemoteProxies, found as members join and leave. The operator runs the proxy runner in its
aggregating mode (Deployment, Service, RunConfig with `aggregate`); the aggregator writes
`status.backendHealth` and `status.unresolvedConflicts`, from which the operator derives
`discoveredBackends` and the conditions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Self

from pydantic import Field, StringConstraints, model_validator

from moorage_api.base import (
    CONDITIONS_FIELD_EXTRA,
    DNS1123_SUBDOMAIN_PATTERN,
    LIST_SET,
    ApiModel,
    Condition,
    ObjectMeta,
    ObjectName,
    ResourceRequirements,
    Timestamp,
    cel,
    check_object_name,
    find_duplicates,
    list_map,
    object_name_rules,
    validations,
)
from moorage_api.constants import KIND_VIRTUALMCPSERVER
from moorage_api.mcpgroup import MemberKind
from moorage_api.mcpserver import (
    ENDPOINT_PREFIX_PATTERN,
    MCPSERVER_NAME_PATTERN,
    AuditConfig,
    AuthzConfig,
    MCPServerPhase,
    OIDCConfig,
    PodTemplateSpec,
    ProxyStatus,
    SessionAffinity,
    ToolConfigRef,
)
from moorage_api.ratelimits import RateLimits, rate_limits_field
from moorage_api.references import ExternalAuthConfigRef, GroupRef
from moorage_api.runconfig import SEPARATOR_PATTERN
from moorage_api.sessionstorage import (
    SessionStorage,
    replicas_need_redis_rule,
    session_storage_field,
)

VIRTUALMCPSERVER_NAME_MAX_LENGTH: Final = 54
"""Longest VirtualMCPServer name whose Service `mcp-<name>-vmcp` stays ≤ 63 characters."""
TOOL_NAME_PATTERN: Final = r"^[A-Za-z0-9_.-]{1,128}$"
"""A tool name every MCP client accepts."""
DEFAULT_SEPARATOR: Final = "_"
PRIORITY_MAX_ITEMS: Final = 64
MANUAL_MAX_ITEMS: Final = 128
BACKENDS_MAX_PROPERTIES: Final = 128
_CEL_SUBDOMAIN: Final = DNS1123_SUBDOMAIN_PATTERN.replace(r"\.", "[.]")
_BACKEND_KEYS_RULE: Final = validations(
    cel(
        # `[.]`: a backslash is an escape in a CEL string literal.
        f"self.all(k, k.size() <= 253 && k.matches('{_CEL_SUBDOMAIN}'))",
        message="keys must be backend (member) names: lower-case DNS-1123 subdomains",
    )
)
_BACKEND_KEY: Final = re.compile(DNS1123_SUBDOMAIN_PATTERN)


def _check_backend_keys(field: str, keys: Iterable[str]) -> None:
    for key in sorted(keys):
        if len(key) > 253 or _BACKEND_KEY.fullmatch(key) is None:
            raise ValueError(
                f"{field}: {key!r} is not a backend (member) name: a lower-case DNS-1123 subdomain"
            )


ToolName = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=TOOL_NAME_PATTERN)
]

VirtualMCPServerPhase = MCPServerPhase
"""A virtual server has the same coarse states as an MCPServer."""

ConflictStrategy = Literal["prefix", "priority", "manual"]
BackendHealthState = Literal["healthy", "unhealthy", "unknown"]


class VirtualMCPServerConditionType(StrEnum):
    """Condition types a VirtualMCPServer's status carries."""

    READY = "Ready"
    BACKENDS_DISCOVERED = "BackendsDiscovered"
    CONFLICTS_RESOLVED = "ConflictsResolved"
    GROUP_RESOLVED = "GroupResolved"
    POD_TEMPLATE_VALID = "PodTemplateValid"
    AUTH_CONFIG_VALID = "AuthConfigValid"
    TOOL_CONFIG_RESOLVED = "ToolConfigResolved"


class IncomingAuth(ApiModel):
    """How MCP clients authenticate to the virtual server and what they may do."""

    oidc_config: OIDCConfig | None = Field(
        None, description="Authentication of MCP clients; unset → unauthenticated."
    )
    authz_config: AuthzConfig | None = Field(None, description="Cedar authorisation.")


class BackendAuth(ApiModel):
    """How the aggregator authenticates to one backend."""

    external_auth_config_ref: ExternalAuthConfigRef = Field(
        ..., description="An MCPExternalAuthConfig used instead of the backend's own."
    )


class OutgoingAuth(ApiModel):
    """How the aggregator authenticates to its backends."""

    backends: dict[str, BackendAuth] = Field(
        default_factory=dict,
        max_length=BACKENDS_MAX_PROPERTIES,
        json_schema_extra=_BACKEND_KEYS_RULE,
        description=(
            "Per backend (the member's name), an MCPExternalAuthConfig overriding what is "
            "discovered. A backend not listed is discovered: the member's own "
            "`externalAuthConfigRef` if it has one, else unauthenticated."
        ),
    )


class ManualName(ApiModel):
    """The name one backend's tool gets under the `manual` strategy."""

    backend: ObjectName = Field(..., description="The backend (member) offering the tool.")
    tool: ToolName = Field(..., description="The tool's name as the backend offers it.")
    name: ToolName = Field(..., description="The name clients see.")


class ConflictResolution(ApiModel):
    """How tools of the same name offered by two backends are told apart."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "!has(self.separator) || self.strategy == 'prefix'",
                message="separator is allowed only with strategy prefix",
                field_path=".separator",
            ),
            cel(
                "self.strategy == 'priority' ? has(self.priority) : !has(self.priority)",
                message="priority is required with strategy priority and not allowed otherwise",
                field_path=".priority",
            ),
            cel(
                "self.strategy == 'manual' ? has(self.manual) : !has(self.manual)",
                message="manual is required with strategy manual and not allowed otherwise",
                field_path=".manual",
            ),
            cel(
                "!has(self.manual) || self.manual.all(m, "
                "self.manual.exists_one(o, o.name == m.name))",
                message="manual names must be unique",
                field_path=".manual",
            ),
        )
    }

    strategy: ConflictStrategy = Field(
        "prefix",
        description=(
            "`prefix`: every tool is named `<backend><separator><tool>`; `priority`: the first "
            "backend in `priority` offering a name keeps it and the others' tools of that name "
            "are hidden; `manual`: conflicting tools are named by `manual`, and a conflict it "
            "leaves unresolved is reported in status, never dropped silently."
        ),
    )
    separator: str | None = Field(
        None,
        pattern=SEPARATOR_PATTERN,
        description=f"Between backend and tool name with `prefix` (default `{DEFAULT_SEPARATOR}`).",
    )
    priority: list[ObjectName] | None = Field(
        None,
        min_length=1,
        max_length=PRIORITY_MAX_ITEMS,
        json_schema_extra=LIST_SET,
        description="Backends (member names), first wins; with `priority` only.",
    )
    manual: list[ManualName] | None = Field(
        None,
        min_length=1,
        max_length=MANUAL_MAX_ITEMS,
        json_schema_extra=list_map("backend", "tool"),
        description="Names of tools, unique by (backend, tool) and by name; with `manual` only.",
    )

    @property
    def effective_separator(self) -> str:
        return DEFAULT_SEPARATOR if self.separator is None else self.separator

    @model_validator(mode="after")
    def _fields_of_strategy(self) -> Self:
        if self.separator is not None and self.strategy != "prefix":
            raise ValueError("separator: allowed only with strategy prefix")
        for member, value in (("priority", self.priority), ("manual", self.manual)):
            if self.strategy == member and value is None:
                raise ValueError(f"{member}: required with strategy {member}")
            if self.strategy != member and value is not None:
                raise ValueError(f"{member}: not allowed with strategy {self.strategy}")
        if self.priority and (duplicates := find_duplicates(list(self.priority))):
            raise ValueError(f"priority: backends listed twice: {', '.join(duplicates)}")
        if self.manual:
            pairs = [f"{m.backend}/{m.tool}" for m in self.manual]
            if duplicates := find_duplicates(pairs):
                raise ValueError(f"manual: (backend, tool) given twice: {', '.join(duplicates)}")
            if duplicates := find_duplicates([m.name for m in self.manual]):
                raise ValueError(f"manual: names must be unique: {', '.join(duplicates)}")
        return self


class VirtualMCPServerSpec(ApiModel):
    """Desired state of a VirtualMCPServer."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(replicas_need_redis_rule())
    }

    group_ref: GroupRef = Field(..., description="The MCPGroup whose members are the backends.")
    incoming_auth: IncomingAuth = Field(
        IncomingAuth(), description="Authentication and authorisation of MCP clients."
    )
    outgoing_auth: OutgoingAuth = Field(
        OutgoingAuth(), description="Authentication to the backends (discovered, or overridden)."
    )
    tool_configs: dict[str, ToolConfigRef] = Field(
        default_factory=dict,
        max_length=BACKENDS_MAX_PROPERTIES,
        json_schema_extra=_BACKEND_KEYS_RULE,
        description="Per backend (the member's name), an MCPToolConfig filtering and renaming "
        "its tools before conflicts are resolved.",
    )
    conflict_resolution: ConflictResolution = Field(
        ConflictResolution(), description="How tools of the same name are told apart."
    )
    port: int = Field(
        8080, ge=1, le=65535, description="The aggregator's port (container, Service)."
    )
    audit: AuditConfig = Field(AuditConfig(), description="Audit logging.")
    resources: ResourceRequirements | None = Field(
        None, description="Compute resources of the `proxyrunner` container."
    )
    pod_template_spec: PodTemplateSpec | None = Field(
        None,
        description=(
            "A PodTemplateSpec applied to the aggregator's pod first; Moorage's required settings "
            "(container `proxyrunner`) are applied on top."
        ),
    )
    replicas: int = Field(
        1,
        ge=0,
        description=(
            "Aggregator Deployment replicas; 0 → Stopped. Above 1 needs `sessionStorage.type: redis`."
        ),
    )
    session_affinity: SessionAffinity = Field(
        "ClientIP", description="Session affinity of the aggregator's Service."
    )
    trust_proxy_headers: bool = Field(
        False, description="Honour `X-Forwarded-*` headers when building SSE endpoint URLs."
    )
    endpoint_prefix: str | None = Field(
        None,
        max_length=1024,
        pattern=ENDPOINT_PREFIX_PATTERN,
        description="Path prefix for SSE endpoint URLs behind an ingress.",
    )
    session_storage: SessionStorage = session_storage_field()
    rate_limits: RateLimits | None = rate_limits_field()

    @model_validator(mode="after")
    def _check_backend_keys(self) -> Self:
        _check_backend_keys("outgoingAuth.backends", self.outgoing_auth.backends)
        _check_backend_keys("toolConfigs", self.tool_configs)
        return self


class BackendHealth(ApiModel):
    """The aggregator's last check of one backend (written only by the proxy runner)."""

    name: str = Field(..., description="The backend (member) name.")
    healthy: bool | None = Field(
        None, description="The backend answered and listed its tools; null until checked."
    )
    tool_count: int | None = Field(None, ge=0, description="Tools the backend offers.")
    message: str = Field("", max_length=32768, description="What happened.")
    checked_at: Timestamp | None = Field(None, description="When the check ran (RFC 3339).")


class UnresolvedConflict(ApiModel):
    """A tool name offered by several backends that the strategy left unresolved."""

    name: str = Field(..., description="The tool name.")
    backends: list[str] = Field(
        default_factory=list, description="The backends offering a tool of that name."
    )


class DiscoveredBackend(ApiModel):
    """One backend as the operator last saw it: a group member joined with its health."""

    name: str = Field(..., description="The member's name.")
    kind: MemberKind = Field(..., description="`MCPServer` or `MCPRemoteProxy`.")
    url: str = Field(..., description="Where the aggregator reaches it.")
    health: BackendHealthState = Field(
        "unknown", description="`healthy`, `unhealthy` or `unknown` (not yet checked)."
    )
    tool_count: int | None = Field(None, ge=0, description="Tools it offers, once checked.")


class VirtualMCPServerStatus(ProxyStatus):
    """Observed state of a VirtualMCPServer, written by the operator (`backendHealth` and
    `unresolvedConflicts`: the proxy runner)."""

    discovered_backends: list[DiscoveredBackend] = Field(
        default_factory=list,
        json_schema_extra=list_map("name"),
        description="The group's members as backends, sorted by name.",
    )
    backend_count: int | None = Field(None, ge=0, description="Backends discovered.")
    backend_health: list[BackendHealth] = Field(
        default_factory=list,
        json_schema_extra=list_map("name"),
        description="The aggregator's last check of each backend; never set by the operator.",
    )
    unresolved_conflicts: list[UnresolvedConflict] = Field(
        default_factory=list,
        json_schema_extra=list_map("name"),
        description="Tool names the strategy left unresolved; never set by the operator.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra=CONDITIONS_FIELD_EXTRA,
        description=(
            "`Ready`, `BackendsDiscovered` (every backend checked), `ConflictsResolved` (names "
            "the unresolved conflicts), `GroupResolved`, `PodTemplateValid`, "
            "`ToolConfigResolved`, `AuthConfigValid`."
        ),
    )


class VirtualMCPServer(ApiModel):
    """One MCP endpoint aggregating the MCPServers and MCPRemoteProxies of an MCPGroup."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": object_name_rules(
            max_length=VIRTUALMCPSERVER_NAME_MAX_LENGTH,
            pattern=MCPSERVER_NAME_PATTERN,
            why="its Service is named mcp-<name>-vmcp",
        )
    }

    api_version: Literal["moorage.dev/v1alpha1"] = Field(
        "moorage.dev/v1alpha1", description="`moorage.dev/v1alpha1`."
    )
    kind: Literal["VirtualMCPServer"] = Field(
        KIND_VIRTUALMCPSERVER, description="`VirtualMCPServer`."
    )
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard metadata.")
    spec: VirtualMCPServerSpec = Field(..., description="Desired state.")
    status: VirtualMCPServerStatus = Field(
        default_factory=VirtualMCPServerStatus, description="Observed state."
    )

    @model_validator(mode="after")
    def _check_name(self) -> Self:
        check_object_name(
            self.metadata.name,
            max_length=VIRTUALMCPSERVER_NAME_MAX_LENGTH,
            pattern=MCPSERVER_NAME_PATTERN,
        )
        return self


def parse_virtualmcpserver(obj: dict[str, Any]) -> VirtualMCPServer:
    """Validate a raw VirtualMCPServer; raises `pydantic.ValidationError`."""
    return VirtualMCPServer.model_validate(obj)
