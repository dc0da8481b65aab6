"""The MCPRemoteProxy kind: Moorage's authenticated, governed proxy in front of a remote MCP server.

Pure: models and the rules the schema can state. The operator turns a valid MCPRemoteProxy into a
proxy Deployment, Service, RunConfig (with `remote` and `outgoing_auth`) and a least-privilege
ServiceAccount, with no MCP workload; the proxy runner checks the remote and writes
`status.remoteCheck`, from which the operator derives condition `RemoteAvailable`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final, Literal, Self

from pydantic import Field, model_validator

from moorage_api.base import (
    CONDITIONS_FIELD_EXTRA,
    HTTP_URL_MAX_LENGTH,
    HTTP_URL_PATTERN,
    ApiModel,
    Condition,
    ObjectMeta,
    ResourceRequirements,
    SecretKeySelector,
    Timestamp,
    cel,
    check_object_name,
    list_map,
    object_name_rules,
    validations,
)
from moorage_api.constants import KIND_MCPREMOTEPROXY
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
from moorage_api.outgoing import (
    ConfiguredHeaderName,
    RemoteTransport,
    find_duplicate_headers,
    header_name_rule,
    remote_url_problem,
)
from moorage_api.ratelimits import RateLimits, rate_limits_field
from moorage_api.references import ExternalAuthConfigRef, GroupRef
from moorage_api.sessionstorage import (
    SessionStorage,
    replicas_need_redis_rule,
    session_storage_field,
)

MCPREMOTEPROXY_NAME_MAX_LENGTH: Final = 46
"""Longest MCPRemoteProxy name whose Service `mcp-<name>-remote-proxy` stays ≤ 63 characters."""
HEADERS_MAX_ITEMS: Final = 64
HEADER_VALUE_PATTERN: Final = r"^[^\r\n\x00]*$"
"""A header value with no line break or NUL (they would split or end the header)."""

MCPRemoteProxyPhase = MCPServerPhase
"""A remote proxy has the same coarse states as an MCPServer."""


class MCPRemoteProxyConditionType(StrEnum):
    """Condition types an MCPRemoteProxy's status carries."""

    READY = "Ready"
    REMOTE_AVAILABLE = "RemoteAvailable"
    POD_TEMPLATE_VALID = "PodTemplateValid"
    TOOL_CONFIG_RESOLVED = "ToolConfigResolved"
    AUTH_CONFIG_VALID = "AuthConfigValid"
    GROUP_RESOLVED = "GroupResolved"


class RemoteAvailableReason(StrEnum):
    """Reasons of the `RemoteAvailable` condition, derived from `status.remoteCheck`."""

    NOT_CHECKED = "NotChecked"
    ANSWERED = "Answered"
    UNREACHABLE = "Unreachable"


class ForwardedHeader(ApiModel):
    """A header with a fixed (not secret) value added to every request sent to the remote."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(header_name_rule("name"))
    }

    name: ConfiguredHeaderName = Field(..., description="Header name.")
    value: str = Field(
        ...,
        max_length=8192,
        pattern=HEADER_VALUE_PATTERN,
        description="Header value; no line breaks. Secrets belong in `addHeadersFromSecret`.",
    )


class SecretHeader(ApiModel):
    """A header whose value comes from a Secret, added to every request sent to the remote."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(header_name_rule("headerName"))
    }

    header_name: ConfiguredHeaderName = Field(..., description="Header name.")
    value_secret_ref: SecretKeySelector = Field(
        ..., description="The Secret key holding the value (reaches the proxy as an env var)."
    )


class HeaderForward(ApiModel):
    """Headers the proxy adds to what it sends upstream; names unique without case."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "!has(self.addHeaders) || !has(self.addHeadersFromSecret) || "
                "self.addHeaders.all(h, !self.addHeadersFromSecret.exists(s, "
                "s.headerName.lowerAscii() == h.name.lowerAscii()))",
                message="a header name is given in both addHeaders and addHeadersFromSecret",
                field_path=".addHeadersFromSecret",
            ),
            cel(
                "!has(self.addHeaders) || self.addHeaders.all(h, "
                "self.addHeaders.exists_one(o, o.name.lowerAscii() == h.name.lowerAscii()))",
                message="addHeaders names must be unique without regard to case",
                field_path=".addHeaders",
            ),
            cel(
                "!has(self.addHeadersFromSecret) || self.addHeadersFromSecret.all(h, "
                "self.addHeadersFromSecret.exists_one(o, "
                "o.headerName.lowerAscii() == h.headerName.lowerAscii()))",
                message="addHeadersFromSecret names must be unique without regard to case",
                field_path=".addHeadersFromSecret",
            ),
        )
    }

    add_headers: list[ForwardedHeader] = Field(
        default_factory=list,
        max_length=HEADERS_MAX_ITEMS,
        json_schema_extra=list_map("name"),
        description="Headers with fixed values.",
    )
    add_headers_from_secret: list[SecretHeader] = Field(
        default_factory=list,
        max_length=HEADERS_MAX_ITEMS,
        json_schema_extra=list_map("headerName"),
        description="Headers whose values come from Secrets.",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        names = [h.name for h in self.add_headers]
        names += [h.header_name for h in self.add_headers_from_secret]
        if duplicates := find_duplicate_headers(names):
            raise ValueError(
                "addHeaders: header names must be unique without regard to case across "
                f"addHeaders and addHeadersFromSecret: {', '.join(duplicates)}"
            )
        return self


class MCPRemoteProxySpec(ApiModel):
    """Desired state of an MCPRemoteProxy."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(replicas_need_redis_rule())
    }

    remote_url: str = Field(
        ...,
        max_length=HTTP_URL_MAX_LENGTH,
        pattern=HTTP_URL_PATTERN,
        description=(
            "The remote MCP endpoint (http or https, no credentials, no fragment); a private "
            "or loopback address needs `allowPrivateEndpoint`."
        ),
    )
    allow_private_endpoint: bool = Field(
        False,
        description="Allow a private or loopback remote address (also after DNS resolution).",
    )
    transport: RemoteTransport = Field(
        "streamable-http",
        description="How the remote server speaks MCP (and so do the proxy's clients).",
    )
    port: int = Field(8080, ge=1, le=65535, description="The proxy's port (container, Service).")
    oidc_config: OIDCConfig | None = Field(
        None, description="Authentication of MCP clients; unset → unauthenticated."
    )
    authz_config: AuthzConfig | None = Field(None, description="Cedar authorisation.")
    tool_config_ref: ToolConfigRef | None = Field(
        None, description="An MCPToolConfig filtering and renaming tools."
    )
    audit: AuditConfig = Field(AuditConfig(), description="Audit logging.")
    resources: ResourceRequirements | None = Field(
        None, description="Compute resources of the `proxyrunner` container."
    )
    pod_template_spec: PodTemplateSpec | None = Field(
        None,
        description=(
            "A PodTemplateSpec applied to the proxy's pod first; Moorage's required settings "
            "(container `proxyrunner`) are applied on top."
        ),
    )
    replicas: int = Field(
        1,
        ge=0,
        description=(
            "Proxy Deployment replicas; 0 → Stopped. Above 1 needs `sessionStorage.type: redis`."
        ),
    )
    session_affinity: SessionAffinity = Field(
        "ClientIP", description="Session affinity of the proxy Service."
    )
    header_forward: HeaderForward | None = Field(
        None, description="Headers added to every request sent to the remote."
    )
    external_auth_config_ref: ExternalAuthConfigRef | None = Field(
        None, description="An MCPExternalAuthConfig: how the proxy authenticates to the remote."
    )
    group_ref: GroupRef | None = Field(None, description="The MCPGroup this proxy belongs to.")
    trust_proxy_headers: bool = Field(
        False, description="Honour `X-Forwarded-*` headers when building SSE endpoint URLs."
    )
    endpoint_prefix: str | None = Field(
        None,
        max_length=1024,
        pattern=ENDPOINT_PREFIX_PATTERN,
        description="Path prefix for SSE endpoint URLs behind an ingress (e.g. `/remote/docs`).",
    )
    session_storage: SessionStorage = session_storage_field()
    rate_limits: RateLimits | None = rate_limits_field()

    @model_validator(mode="after")
    def _check_remote_url(self) -> Self:
        if problem := remote_url_problem(
            self.remote_url, allow_private=self.allow_private_endpoint
        ):
            raise ValueError(f"remoteUrl: {problem}")
        return self


class RemoteCheck(ApiModel):
    """The proxy runner's last `initialize` of the remote (written only by the proxy runner)."""

    answered: bool = Field(..., description="The remote answered `initialize`.")
    checked_at: Timestamp = Field(..., description="When the check ran (RFC 3339).")
    protocol_version: str | None = Field(
        None, max_length=64, description="The protocol version the remote answered with."
    )
    server_name: str | None = Field(
        None, max_length=1024, description="`serverInfo.name` the remote answered with."
    )
    message: str = Field(
        "", max_length=32768, description="What happened, e.g. why the remote did not answer."
    )


class MCPRemoteProxyStatus(ProxyStatus):
    """Observed state of an MCPRemoteProxy, written by the operator (`remoteCheck`: the proxy
    runner)."""

    remote_check: RemoteCheck | None = Field(
        None, description="The proxy runner's last check of the remote; never set by the operator."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra=CONDITIONS_FIELD_EXTRA,
        description=(
            "`Ready`, `RemoteAvailable` (from `remoteCheck`), `PodTemplateValid`, "
            "`ToolConfigResolved`, `AuthConfigValid`, `GroupResolved`."
        ),
    )


class MCPRemoteProxy(ApiModel):
    """A remote MCP server behind Moorage's authenticated, observable proxy."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": object_name_rules(
            max_length=MCPREMOTEPROXY_NAME_MAX_LENGTH,
            pattern=MCPSERVER_NAME_PATTERN,
            why="its Service is named mcp-<name>-remote-proxy",
        )
    }

    api_version: Literal["moorage.dev/v1alpha1"] = Field(
        "moorage.dev/v1alpha1", description="`moorage.dev/v1alpha1`."
    )
    kind: Literal["MCPRemoteProxy"] = Field(KIND_MCPREMOTEPROXY, description="`MCPRemoteProxy`.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard metadata.")
    spec: MCPRemoteProxySpec = Field(..., description="Desired state.")
    status: MCPRemoteProxyStatus = Field(
        default_factory=MCPRemoteProxyStatus, description="Observed state."
    )

    @model_validator(mode="after")
    def _check_name(self) -> Self:
        check_object_name(
            self.metadata.name,
            max_length=MCPREMOTEPROXY_NAME_MAX_LENGTH,
            pattern=MCPSERVER_NAME_PATTERN,
        )
        return self


def parse_mcpremoteproxy(obj: dict[str, Any]) -> MCPRemoteProxy:
    """Validate a raw MCPRemoteProxy (as the apiserver returns it); raises
    `pydantic.ValidationError`."""
    return MCPRemoteProxy.model_validate(obj)
