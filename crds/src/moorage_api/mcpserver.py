"""The MCPServer kind (spec §2.1): an MCP server Moorage runs behind an authenticated proxy.

Pure: models and the rules the schema can state. The webhook adds what a schema cannot say
(podTemplateSpec validity, Cedar parsing, transport/port consistency); the operator turns a valid
MCPServer into children (spec §3) and a RunConfig (spec §3.1).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Self

from pydantic import Field, StringConstraints, WithJsonSchema, field_validator, model_validator

from moorage_api.base import (
    CONDITIONS_FIELD_EXTRA,
    HTTP_URL_PATTERN,
    LIST_SET,
    ApiModel,
    Condition,
    ConfigMapKey,
    EnvName,
    EnvVar,
    ObjectMeta,
    ObjectName,
    ResourceRequirements,
    cel,
    check_member_for_type,
    check_object_name,
    find_duplicates,
    list_map,
    object_name_rules,
    set_exactly_for_type,
    validations,
)
from moorage_api.cedarbounds import MAX_NESTING, MAX_OPERATORS, CedarEntitiesJson, CedarPolicies
from moorage_api.constants import KIND_MCPSERVER
from moorage_api.images import (
    IMAGE_REFERENCE_MAX_LENGTH,
    IMAGE_REFERENCE_PATTERN,
    parse_image_reference,
)
from moorage_api.ratelimits import RateLimits, rate_limits_field
from moorage_api.references import ExternalAuthConfigRef, GroupRef
from moorage_api.sessionstorage import (
    SessionStorage,
    replicas_need_redis_rule,
    session_storage_field,
)

Transport = Literal["stdio", "sse", "streamable-http"]
ProxyMode = Literal["sse", "streamable-http"]
StdioEra = Literal["handshake", "auto"]
SessionAffinity = Literal["ClientIP", "None"]

MCPSERVER_NAME_MAX_LENGTH: Final = 50
"""Longest MCPServer name whose children's names stay valid (`mcp-<name>-headless` ≤ 63)."""
MCPSERVER_NAME_PATTERN: Final = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
"""Service names must start with a letter (DNS-1035), and `mcp-<name>-proxy` embeds the name."""
SERVICE_ACCOUNT_REF_PATTERN: Final = (
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
)
ENDPOINT_PREFIX_PATTERN: Final = r"^/[^\s?#]*$"
_HOST_LABEL: Final = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_PORT: Final = (
    r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
)
ALLOWED_HOST_PATTERN: Final = rf"^{_HOST_LABEL}(\.{_HOST_LABEL})*(:({_PORT}|\*))?$"
"""A `Host` the proxy accepts: a lower-case DNS name (or IPv4 address), optionally `:<port>`
(1-65535) or `:*` (any port); a bare name also accepts any port."""
ALLOWED_HOST_NAME_MAX_LENGTH: Final = 253
ALLOWED_HOSTS_MAX_ITEMS: Final = 32
BUILTIN_PROFILES: Final = ("none", "network")


class MCPServerPhase(StrEnum):
    """Coarse state of an MCPServer (`status.phase`)."""

    PENDING = "Pending"
    RUNNING = "Running"
    FAILED = "Failed"
    TERMINATING = "Terminating"
    STOPPED = "Stopped"


class MCPServerConditionType(StrEnum):
    """Condition types an MCPServer's status carries."""

    READY = "Ready"
    POD_TEMPLATE_VALID = "PodTemplateValid"
    TOOL_CONFIG_RESOLVED = "ToolConfigResolved"
    AUTH_CONFIG_VALID = "AuthConfigValid"
    STDIO_REPLICA_CAPPED = "StdioReplicaCapped"
    GROUP_RESOLVED = "GroupResolved"


class ReadyReason(StrEnum):
    """Reasons of the `Ready` condition."""

    RUNNING = "Running"
    NOT_READY = "NotReady"
    FAILED = "Failed"


class SecretEnv(ApiModel):
    """A Secret key injected as an environment variable (`secretKeyRef`); never copied elsewhere."""

    name: ObjectName = Field(..., description="Name of the Secret in the MCPServer's namespace.")
    key: ConfigMapKey = Field(..., description="Key in the Secret's data.")
    target_env_name: EnvName | None = Field(
        None, description="Environment variable to set; defaults to `key`."
    )

    @property
    def env_name(self) -> str:
        """The variable the MCP container sees."""
        return self.target_env_name or self.key


PermissionProfileType = Literal["builtin", "configMap"]


class PermissionProfileRef(ApiModel):
    """Which network permissions the MCP pods get."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.type != 'builtin' || self.name in ['none', 'network']",
                message="a builtin permission profile is named none or network",
                field_path=".name",
            ),
            cel(
                "self.type == 'configMap' || !has(self.key)",
                message="key is only used with a configMap permission profile",
                field_path=".key",
            ),
        )
    }

    type: PermissionProfileType = Field(
        "builtin",
        description=(
            "`builtin` for a profile Moorage knows (`none`: no egress, `network`: no "
            "restriction), `configMap` for a profile JSON in a ConfigMap."
        ),
    )
    name: ObjectName = Field(
        ..., description="Builtin profile name (`none`, `network`) or the ConfigMap's name."
    )
    key: ConfigMapKey | None = Field(
        None,
        description=(
            "Key in the ConfigMap holding the profile JSON (its `network.outbound.allow_port` and "
            "`allow_cidr` become egress rules); defaults to `profile.json`."
        ),
    )

    @model_validator(mode="after")
    def _check_type(self) -> Self:
        if self.type == "builtin" and self.name not in BUILTIN_PROFILES:
            raise ValueError(
                f"name: builtin profile {self.name!r} does not exist (expected none or network)"
            )
        if self.type != "configMap" and self.key is not None:
            raise ValueError("key: only used with a configMap permission profile")
        return self


class InlineOIDCConfig(ApiModel):
    """An OIDC issuer whose bearer tokens the proxy accepts."""

    issuer: str = Field(
        ...,
        max_length=2048,
        pattern=HTTP_URL_PATTERN,
        description="Issuer URL; must equal the tokens' `iss` claim.",
    )
    audience: str = Field(..., min_length=1, description="Audience the tokens must carry in `aud`.")
    jwks_url: str | None = Field(
        None,
        max_length=2048,
        pattern=HTTP_URL_PATTERN,
        description="JWKS URL; discovered from the issuer's metadata when unset.",
    )
    client_id: str | None = Field(
        None, description="OAuth client id advertised in the protected-resource metadata."
    )
    required_scopes: list[str] = Field(
        default_factory=list, description="Scopes every token must include."
    )


class OIDCConfigMapRef(ApiModel):
    """A ConfigMap key holding the inline OIDC fields as JSON."""

    name: ObjectName = Field(..., description="Name of the ConfigMap in the same namespace.")
    key: ConfigMapKey = Field("oidc.json", description="Key of the JSON document.")


class KubernetesOIDCConfig(ApiModel):
    """Accept projected service-account tokens of this cluster's issuer."""

    audience: str = Field("moorage", min_length=1, description="Audience the tokens must carry.")
    issuer: str | None = Field(
        None,
        max_length=2048,
        pattern=HTTP_URL_PATTERN,
        description="Issuer; discovered from the apiserver when unset.",
    )
    allowed_service_accounts: list[
        Annotated[str, StringConstraints(pattern=SERVICE_ACCOUNT_REF_PATTERN)]
    ] = Field(
        default_factory=list,
        description="Service accounts (`namespace/name`) allowed in; empty allows any.",
    )


OIDCConfigType = Literal["kubernetes", "configMap", "inline"]


class OIDCConfig(ApiModel):
    """How the proxy authenticates MCP clients; absent means unauthenticated."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            set_exactly_for_type("inline"),
            set_exactly_for_type("configMap"),
            cel(
                "self.type == 'kubernetes' || !has(self.kubernetes)",
                message="kubernetes is only allowed when type is kubernetes",
                field_path=".kubernetes",
            ),
        )
    }

    type: OIDCConfigType = Field(
        ...,
        description=(
            "`kubernetes`: service-account tokens of this cluster; `configMap`: issuer settings "
            "from a ConfigMap; `inline`: issuer settings here."
        ),
    )
    inline: InlineOIDCConfig | None = Field(None, description="Issuer settings for `inline`.")
    config_map: OIDCConfigMapRef | None = Field(
        None, description="Where the settings are for `configMap`."
    )
    kubernetes: KubernetesOIDCConfig | None = Field(
        None, description="Settings for `kubernetes` (defaults apply when unset)."
    )

    @model_validator(mode="after")
    def _check_type(self) -> Self:
        check_member_for_type(self.type, member="inline", value=self.inline)
        check_member_for_type(self.type, member="configMap", value=self.config_map)
        if self.type != "kubernetes" and self.kubernetes is not None:
            raise ValueError("kubernetes: only allowed when type is kubernetes")
        return self


class InlineAuthzConfig(ApiModel):
    """Cedar policies and entities."""

    policies: CedarPolicies = Field(
        ...,
        description="Cedar policies; each string may hold several. Brackets may nest "
        f"{MAX_NESTING} deep and one policy may hold {MAX_OPERATORS} operators.",
    )
    entities_json: CedarEntitiesJson = Field(
        "[]", description="Cedar entities as a JSON array (principals' parents, attributes)."
    )


class AuthzConfigMapRef(ApiModel):
    """A ConfigMap key holding the inline authorisation fields as JSON."""

    name: ObjectName = Field(..., description="Name of the ConfigMap in the same namespace.")
    key: ConfigMapKey = Field("authz.json", description="Key of the JSON document.")


AuthzConfigType = Literal["inline", "configMap"]


class AuthzConfig(ApiModel):
    """Cedar authorisation of MCP requests."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            set_exactly_for_type("inline"),
            set_exactly_for_type("configMap"),
        )
    }

    type: AuthzConfigType = Field(
        ..., description="`inline`: policies here; `configMap`: policies in a ConfigMap."
    )
    inline: InlineAuthzConfig | None = Field(None, description="Policies for `inline`.")
    config_map: AuthzConfigMapRef | None = Field(
        None, description="Where the policies are for `configMap`."
    )

    @model_validator(mode="after")
    def _check_type(self) -> Self:
        check_member_for_type(self.type, member="inline", value=self.inline)
        check_member_for_type(self.type, member="configMap", value=self.config_map)
        return self


class ToolConfigRef(ApiModel):
    """A reference to an MCPToolConfig in the same namespace."""

    name: ObjectName = Field(..., description="Name of the MCPToolConfig.")


class AuditConfig(ApiModel):
    """Audit logging of MCP requests."""

    enabled: bool = Field(False, description="Write one audit record per MCP request.")


class MetadataOverrides(ApiModel):
    """Extra labels and annotations; Moorage's own keys win on conflict."""

    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Extra annotations.")


class ProxyDeploymentOverrides(ApiModel):
    """Extra metadata and env on the proxy runner's Deployment."""

    labels: dict[str, str] = Field(
        default_factory=dict, description="Extra labels on the Deployment."
    )
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Extra annotations on the Deployment."
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=256,
        json_schema_extra=list_map("name"),
        description="Extra env for the proxyrunner container; names unique.",
    )
    pod_template_metadata_overrides: MetadataOverrides | None = Field(
        None, description="Extra labels and annotations on the Deployment's pods."
    )

    @field_validator("env")
    @classmethod
    def _unique_env(cls, value: list[EnvVar]) -> list[EnvVar]:
        return _check_unique_env(value)


class ResourceOverrides(ApiModel):
    """Extra metadata on the objects the operator creates."""

    proxy_deployment: ProxyDeploymentOverrides | None = Field(
        None, description="For the proxy runner's Deployment."
    )
    proxy_service: MetadataOverrides | None = Field(
        None, description="For the proxy Service `mcp-<name>-proxy`."
    )


def _check_unique_env(value: list[EnvVar]) -> list[EnvVar]:
    duplicates = find_duplicates([item.name for item in value])
    if duplicates:
        raise ValueError(f"environment variable names must be unique: {', '.join(duplicates)}")
    return value


PodTemplateSpec = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
"""A `corev1.PodTemplateSpec` as raw JSON. The CRD keeps it free-form (the only such field) and
the webhook validates it against the real PodTemplateSpec schema."""


class MCPServerSpec(ApiModel):
    """Desired state of an MCPServer."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.transport == 'stdio' || !has(self.stdioEra) || self.stdioEra == 'handshake'",
                message="stdioEra auto is only used with transport stdio",
                field_path=".stdioEra",
            ),
            cel(
                "self.transport != 'stdio' || !has(self.externalAuthConfigRef)",
                message=(
                    "externalAuthConfigRef is only used with transport sse or streamable-http "
                    "(a stdio server has no upstream to authenticate to)"
                ),
                field_path=".externalAuthConfigRef",
            ),
            replicas_need_redis_rule(),
        )
    }

    image: str = Field(
        ...,
        min_length=1,
        max_length=IMAGE_REFERENCE_MAX_LENGTH,
        json_schema_extra={"pattern": IMAGE_REFERENCE_PATTERN},
        description="The MCP server's image, e.g. `ghcr.io/org/server:1.2.0`.",
    )
    transport: Transport = Field(
        "stdio", description="How the MCP server speaks MCP: `stdio`, `sse` or `streamable-http`."
    )
    proxy_mode: ProxyMode = Field(
        "streamable-http",
        description=(
            "What clients get for a stdio server (`sse` or `streamable-http`); for HTTP transports "
            "the proxy speaks the server's transport."
        ),
    )
    stdio_era: StdioEra = Field(
        "handshake",
        description=(
            "The protocol era of a stdio server: `handshake` initialises it (2025-11-25, as every "
            "server accepts); `auto` probes it with `server/discover` and runs a dual-era server "
            "in 2026-07-28, translating for 2025-11-25 clients. Opt-in: in 2026-07-28 tools that ask "
            "the client through server-to-client requests (e.g. `ctx.elicit`) cannot ask."
        ),
    )
    port: int = Field(8080, ge=1, le=65535, description="The proxy's port (container, Service).")
    target_port: int = Field(
        8080, ge=1, le=65535, description="The MCP server's own port (HTTP transports)."
    )
    args: list[str] = Field(
        default_factory=list, max_length=1024, description="Arguments for the `mcp` container."
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=512,
        json_schema_extra=list_map("name"),
        description="Environment for the `mcp` container; names unique.",
    )
    secrets: list[SecretEnv] = Field(
        default_factory=list,
        max_length=256,
        description="Secret keys injected as env into the `mcp` container.",
    )
    service_account: ObjectName | None = Field(
        None,
        description="Existing ServiceAccount for the MCP pods; unset → the operator creates `<name>-sa`.",
    )
    resources: ResourceRequirements | None = Field(
        None, description="Compute resources of the `mcp` container."
    )
    pod_template_spec: PodTemplateSpec | None = Field(
        None,
        description=(
            "A PodTemplateSpec applied to the MCP server's pod first; Moorage's required settings "
            "(container `mcp`: image, args, stdin, env) are applied on top."
        ),
    )
    permission_profile: PermissionProfileRef = Field(
        PermissionProfileRef(type="builtin", name="network"),
        description="Network permissions of the MCP pods.",
    )
    oidc_config: OIDCConfig | None = Field(
        None, description="Authentication of MCP clients; unset → unauthenticated."
    )
    authz_config: AuthzConfig | None = Field(None, description="Cedar authorisation.")
    tool_config_ref: ToolConfigRef | None = Field(
        None, description="An MCPToolConfig filtering and renaming tools."
    )
    audit: AuditConfig = Field(
        AuditConfig(),
        description="Audit logging.",
    )
    replicas: int | None = Field(
        None,
        ge=0,
        description=(
            "Proxy Deployment replicas; unset → not managed (HPA-friendly); 0 → Stopped. Above 1 "
            "(also by an autoscaler) needs `sessionStorage.type: redis`."
        ),
    )
    backend_replicas: int | None = Field(
        None,
        ge=0,
        description="MCP server StatefulSet replicas for HTTP transports; unset → not managed.",
    )
    session_affinity: SessionAffinity = Field(
        "ClientIP", description="Session affinity of the proxy Service."
    )
    trust_proxy_headers: bool = Field(
        False, description="Honour `X-Forwarded-*` headers when building SSE endpoint URLs."
    )
    endpoint_prefix: str | None = Field(
        None,
        max_length=1024,
        pattern=ENDPOINT_PREFIX_PATTERN,
        description="Path prefix for SSE endpoint URLs behind an ingress (e.g. `/servers/time`).",
    )
    resource_overrides: ResourceOverrides | None = Field(
        None, description="Extra metadata and env on the objects the operator creates."
    )
    external_auth_config_ref: ExternalAuthConfigRef | None = Field(
        None,
        description=(
            "An MCPExternalAuthConfig: how the proxy authenticates to the MCP server (transports "
            "`sse` and `streamable-http` only)."
        ),
    )
    group_ref: GroupRef | None = Field(None, description="The MCPGroup this server belongs to.")
    allowed_hosts: list[
        Annotated[
            str,
            StringConstraints(
                max_length=ALLOWED_HOST_NAME_MAX_LENGTH + len(":65535"),
                pattern=ALLOWED_HOST_PATTERN,
            ),
        ]
    ] = Field(
        default_factory=list,
        max_length=ALLOWED_HOSTS_MAX_ITEMS,
        json_schema_extra=LIST_SET
        | validations(
            cel(
                f"self.all(h, h.size() <= {ALLOWED_HOST_NAME_MAX_LENGTH} || "
                f"h.matches('^[^:]{{1,{ALLOWED_HOST_NAME_MAX_LENGTH}}}:[0-9*]+$'))",
                message=(
                    f"each host name must be at most {ALLOWED_HOST_NAME_MAX_LENGTH} characters "
                    "before its :port"
                ),
            )
        ),
        description=(
            "Extra `Host` header values the proxy accepts on its MCP endpoints, such as an "
            "ingress name (`mcp.example.com`, `mcp.example.com:443`, `name:*`). The proxy "
            "Service's names are always accepted, and so are IP addresses and `localhost`; any "
            "other `Host` is refused (DNS-rebinding protection)."
        ),
    )

    # -- shared state and rate limits (moorage_api.sessionstorage, moorage_api.ratelimits) --
    session_storage: SessionStorage = session_storage_field()
    rate_limits: RateLimits | None = rate_limits_field()

    @field_validator("allowed_hosts")
    @classmethod
    def _unique_hosts(cls, value: list[str]) -> list[str]:
        duplicates = find_duplicates(value)
        if duplicates:
            raise ValueError(f"hosts must be listed once: {', '.join(duplicates)}")
        return value

    @field_validator("image")
    @classmethod
    def _check_image(cls, value: str) -> str:
        # The CRD carries IMAGE_REFERENCE_PATTERN; the parser says the same with a readable error.
        parse_image_reference(value)
        return value

    @field_validator("env")
    @classmethod
    def _unique_env(cls, value: list[EnvVar]) -> list[EnvVar]:
        return _check_unique_env(value)

    @model_validator(mode="after")
    def _check_stdio_era(self) -> Self:
        if self.transport != "stdio" and self.stdio_era != "handshake":
            raise ValueError(
                f"stdioEra: {self.stdio_era} is only used with transport stdio, "
                f"not {self.transport}"
            )
        if self.transport == "stdio" and self.external_auth_config_ref is not None:
            raise ValueError(
                "externalAuthConfigRef: only used with transport sse or streamable-http "
                "(a stdio server has no upstream to authenticate to)"
            )
        return self

    @property
    def effective_proxy_mode(self) -> ProxyMode:
        """What clients speak: `proxyMode` for stdio, the transport itself for HTTP transports."""
        if self.transport == "stdio":
            return self.proxy_mode
        return self.transport


class ProxyStatus(ApiModel):
    """Observed state shared by the kinds that run a proxy Deployment, written by the operator."""

    phase: MCPServerPhase | None = Field(
        None, description="`Pending`, `Running`, `Failed`, `Terminating` or `Stopped`."
    )
    message: str | None = Field(None, description="A sentence about the current phase.")
    url: str | None = Field(None, description="Where MCP clients in the cluster connect.")
    ready_replicas: int | None = Field(
        None, ge=0, description="Ready replicas of the proxy Deployment."
    )
    observed_generation: int | None = Field(
        None, ge=0, description="The `.metadata.generation` this status describes."
    )
    tool_config_hash: str | None = Field(
        None, description="`configHash` of the MCPToolConfig in effect."
    )


class MCPServerStatus(ProxyStatus):
    """Observed state of an MCPServer, written by the operator."""

    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra=CONDITIONS_FIELD_EXTRA,
        description=(
            "`Ready`, `PodTemplateValid`, `ToolConfigResolved`, `AuthConfigValid`, "
            "`StdioReplicaCapped`, `GroupResolved`."
        ),
    )


class MCPServer(ApiModel):
    """An MCP server that Moorage runs behind an authenticated, observable proxy."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": object_name_rules(
            max_length=MCPSERVER_NAME_MAX_LENGTH,
            pattern=MCPSERVER_NAME_PATTERN,
            why="children are named mcp-<name>-headless",
        )
    }

    api_version: Literal["moorage.dev/v1alpha1"] = Field(
        "moorage.dev/v1alpha1", description="`moorage.dev/v1alpha1`."
    )
    kind: Literal["MCPServer"] = Field(KIND_MCPSERVER, description="`MCPServer`.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard metadata.")
    spec: MCPServerSpec = Field(..., description="Desired state.")
    status: MCPServerStatus = Field(
        default_factory=MCPServerStatus,
        description="Observed state.",
    )

    @model_validator(mode="after")
    def _check_name(self) -> Self:
        check_object_name(
            self.metadata.name,
            max_length=MCPSERVER_NAME_MAX_LENGTH,
            pattern=MCPSERVER_NAME_PATTERN,
        )
        return self


def parse_mcpserver(obj: dict[str, Any]) -> MCPServer:
    """Validate a raw MCPServer (as the apiserver returns it); raises `pydantic.ValidationError`."""
    return MCPServer.model_validate(obj)
