"""The RunConfig (spec §3.1): everything a proxy runner needs to run one MCPServer.

The operator renders it into ConfigMap `<name>-runconfig` (key `runconfig.json`); the proxy runner
loads it at start-up and again whenever the ConfigMap changes. This module is the contract between
the two: the models, a deterministic rendering and a loader with errors that name the field.

Pure: no I/O. JSON keys are snake_case. Three values are Kubernetes objects copied verbatim and keep
Kubernetes' camelCase inside: `owner` (an ownerReference), `pod_template_spec` and `resources`.
No secret values ever appear here: `secret_env` carries Secret names and keys only.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from moorage_api.base import (
    CAMEL_CASE_CONFIG,
    ConfigMapKey,
    EnvName,
    ObjectName,
    ResourceRequirements,
    validation_messages,
)
from moorage_api.cedarbounds import CedarEntitiesJson, CedarPolicies
from moorage_api.documents import OutboundNetwork
from moorage_api.mcpserver import (
    PermissionProfileType,
    PodTemplateSpec,
    ProxyMode,
    StdioEra,
    Transport,
)

SCHEMA_VERSION: Final = "moorage/v1"

LIVE_FIELDS: Final = frozenset({"generation", "tools_filter", "tools_override", "authz", "audit"})
"""Keys the running proxy applies without a restart; a change to any other key rolls the proxy
(and re-applies the MCP server's StatefulSet). See `restart_checksum`."""


class RunConfigError(ValueError):
    """A RunConfig cannot be used; the message names the field and what is expected."""


class RunConfigModel(BaseModel):
    """Base of the RunConfig's parts: snake_case keys, nothing unknown, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class OwnerReference(BaseModel):
    """The MCPServer as an ownerReference (camelCase: it is used verbatim on children)."""

    model_config = CAMEL_CASE_CONFIG | ConfigDict(extra="forbid")

    api_version: str = Field(..., description="`moorage.dev/v1alpha1`.")
    kind: str = Field(..., description="`MCPServer`.")
    name: str = Field(..., description="Name of the MCPServer.")
    uid: str = Field(..., description="UID of the MCPServer.")


class RunConfigEnvVar(RunConfigModel):
    """A plain environment variable of the `mcp` container."""

    name: EnvName = Field(..., description="Variable name.")
    value: str = Field("", description="Variable value.")


class SecretKeyRef(RunConfigModel):
    """A key of a Secret in the MCPServer's namespace."""

    name: ObjectName = Field(..., description="Secret name.")
    key: ConfigMapKey = Field(..., description="Key in the Secret's data.")


class SecretEnvVar(RunConfigModel):
    """An environment variable of the `mcp` container taken from a Secret (`secretKeyRef`)."""

    name: EnvName = Field(..., description="Variable name.")
    secret_key_ref: SecretKeyRef = Field(..., description="Where the value is.")


class RunConfigPermissionProfile(RunConfigModel):
    """The MCP pods' network permissions, resolved by the operator."""

    type: PermissionProfileType = Field(..., description="`builtin` or `configMap`.")
    name: str = Field(..., description="Builtin profile (`none`, `network`) or ConfigMap name.")
    key: str | None = Field(None, description="ConfigMap key of a configMap profile.")
    outbound: OutboundNetwork | None = Field(
        None,
        description=(
            "Egress allowed by a configMap profile (from its `network.outbound`); null for "
            "builtin profiles (`none` denies all egress, `network` allows all)."
        ),
    )


class RunConfigOIDC(RunConfigModel):
    """Authentication of MCP clients, resolved by the operator (a configMap becomes `oidc`)."""

    type: Literal["oidc", "kubernetes"] = Field(
        ...,
        description="`oidc`: tokens of `issuer`; `kubernetes`: service-account tokens of the cluster.",
    )
    issuer: str | None = Field(
        None, description="Issuer URL; for `kubernetes`, null means discover it."
    )
    audience: str = Field(..., min_length=1, description="Required `aud`.")
    jwks_url: str | None = Field(None, description="JWKS URL; null means discover it.")
    client_id: str | None = Field(None, description="OAuth client id for resource metadata.")
    required_scopes: list[str] = Field(default_factory=list, description="Required scopes.")
    allowed_service_accounts: list[str] = Field(
        default_factory=list,
        description="`namespace/name` of service accounts allowed in (`kubernetes`); empty: any.",
    )

    @model_validator(mode="after")
    def _issuer_for_oidc(self) -> Self:
        if self.type == "oidc" and self.issuer is None:
            raise ValueError("oidc.issuer: required when type is oidc")
        return self


class RunConfigAuthz(RunConfigModel):
    """Cedar policies and entities, resolved by the operator."""

    policies: CedarPolicies = Field(..., description="Cedar policy texts.")
    entities_json: CedarEntitiesJson = Field("[]", description="Cedar entities as a JSON array.")


class RunConfigToolOverride(RunConfigModel):
    """A new name and/or description for one of the server's tools."""

    name: str | None = Field(None, description="Name clients see.")
    description: str | None = Field(None, description="Description clients see.")


class RunConfigAudit(RunConfigModel):
    enabled: bool = Field(False, description="One audit record per MCP request.")


class RunConfig(RunConfigModel):
    """Everything the proxy runner needs to run one MCPServer; no secret values."""

    schema_version: Literal["moorage/v1"] = Field(
        SCHEMA_VERSION, description="Version of this format: `moorage/v1`."
    )
    name: str = Field(..., min_length=1, description="Name of the MCPServer.")
    namespace: str = Field(..., min_length=1, description="Namespace of the MCPServer.")
    owner: OwnerReference | None = Field(
        None, description="The MCPServer as an ownerReference; null when running locally."
    )
    generation: int = Field(0, ge=0, description="`.metadata.generation` rendered.")
    image: str = Field(..., min_length=1, description="Image of the `mcp` container.")
    args: list[str] = Field(default_factory=list, description="Arguments of the `mcp` container.")
    env: list[RunConfigEnvVar] = Field(
        default_factory=list, description="Plain env of the `mcp` container."
    )
    secret_env: list[SecretEnvVar] = Field(
        default_factory=list, description="Env of the `mcp` container from Secret keys."
    )
    transport: Transport = Field("stdio", description="How the MCP server speaks MCP.")
    proxy_mode: ProxyMode = Field(
        "streamable-http", description="What clients get (the transport for HTTP servers)."
    )
    stdio_era: StdioEra = Field(
        "handshake",
        description=(
            "A stdio server's era: `handshake` (initialised) or `auto` (probed with "
            "`server/discover`; a dual-era server runs 2026-07-28)."
        ),
    )
    port: int = Field(8080, ge=1, le=65535, description="The proxy's port.")
    target_port: int = Field(8080, ge=1, le=65535, description="The MCP server's port (HTTP).")
    pod_template_spec: PodTemplateSpec | None = Field(
        None, description="The MCPServer's podTemplateSpec, verbatim (Kubernetes camelCase)."
    )
    resources: ResourceRequirements | None = Field(
        None, description="Resources of the `mcp` container."
    )
    service_account: str | None = Field(
        None, description="ServiceAccount of the MCP pods (`spec.serviceAccount` or `<name>-sa`)."
    )
    backend_replicas: int | None = Field(
        None, ge=0, description="StatefulSet replicas for HTTP transports; null: not managed."
    )
    permission_profile: RunConfigPermissionProfile = Field(
        RunConfigPermissionProfile(type="builtin", name="network"),
        description="Network permissions of the MCP pods.",
    )
    oidc: RunConfigOIDC | None = Field(None, description="Client authentication; null: off.")
    authz: RunConfigAuthz | None = Field(None, description="Cedar authorisation; null: off.")
    tools_filter: list[str] = Field(
        default_factory=list, description="Tool names (after renaming) to expose; empty: all."
    )
    tools_override: dict[str, RunConfigToolOverride] = Field(
        default_factory=dict, description="Renames, keyed by the server's tool name."
    )
    audit: RunConfigAudit = Field(RunConfigAudit(), description="Audit logging.")
    trust_proxy_headers: bool = Field(
        False, description="Honour `X-Forwarded-*` for SSE endpoint URLs."
    )
    endpoint_prefix: str | None = Field(None, description="Path prefix for SSE endpoint URLs.")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description=(
            "`Host` values the proxy accepts on its MCP endpoints: the proxy Service's names "
            "(bare and with the port) and `spec.allowedHosts`. IP addresses and `localhost` are "
            "accepted besides; empty (a RunConfig from an older operator): the proxy derives the "
            "Service's names itself."
        ),
    )


def _as_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_runconfig_json(rc: RunConfig) -> str:
    """The RunConfig as `runconfig.json`: every key present, sorted, indented, newline-terminated.

    Equal RunConfigs render to identical text, so a checksum of it detects real changes only.
    """
    return _as_json(rc.model_dump(mode="json", by_alias=True))


def restart_checksum(rc: RunConfig) -> str:
    """SHA-256 over every key except `LIVE_FIELDS`: it changes exactly when the proxy must restart.

    The operator puts it in the proxy pod template's `moorage.dev/runconfig-checksum` annotation.
    """
    data = rc.model_dump(mode="json", by_alias=True, exclude=set(LIVE_FIELDS))
    return hashlib.sha256(_as_json(data).encode()).hexdigest()


def load_runconfig(text: str) -> RunConfig:
    """Parse `runconfig.json`; raises `RunConfigError` naming the field(s) at fault."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunConfigError(
            f"runconfig is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(data, dict):
        raise RunConfigError(f"runconfig must be a JSON object, not {type(data).__name__}")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RunConfigError(
            f"runconfig schema_version is {version!r}; this proxy runner reads {SCHEMA_VERSION!r}"
        )
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise RunConfigError("invalid runconfig: " + "; ".join(validation_messages(exc))) from None
