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
    find_duplicates,
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
from moorage_api.outgoing import (
    TOKEN_TYPE_ACCESS_TOKEN,
    ClientAuthMethod,
    HeaderName,
    OutgoingAuthType,
    RemoteTransport,
    find_duplicate_headers,
    header_name_problem,
    remote_url_problem,
)
from moorage_api.ratelimits import MAX_BURST, MAX_REQUESTS_PER_MINUTE, RateLimits, WhenUnavailable
from moorage_api.sessionstorage import (
    KeyPrefix,
    RedisAddress,
    SessionStorage,
    SessionStorageType,
    default_key_prefix,
)

SCHEMA_VERSION: Final = "moorage/v1"

LIVE_FIELDS: Final = frozenset(
    {
        "generation",
        "tools_filter",
        "tools_override",
        "authz",
        "audit",
        "rate_limits",
        "proxy_replicas",
    }
)
"""Keys the running proxy applies without a restart; a change to any other key rolls the proxy
(and re-applies the MCP server's StatefulSet). See `restart_checksum`. `proxy_replicas` is live
so that scaling a stdio server's proxies does not roll the ones already running: they scale the
StatefulSet to it themselves."""


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


class SecretValue(RunConfigModel):
    """A secret the proxy runner reads from its own environment, never from this file.

    In a cluster the operator sets variable `env` of the proxy container from `secret_key_ref`;
    locally (`run --local`) the user sets it.
    """

    env: EnvName = Field(..., description="Variable of the proxy container holding the value.")
    secret_key_ref: SecretKeyRef | None = Field(
        None, description="The Secret key the operator takes the value from; null locally."
    )


class RunConfigHeader(RunConfigModel):
    """A header the proxy adds to every request it sends upstream: fixed, or from a Secret."""

    name: HeaderName = Field(..., description="Header name.")
    value: str | None = Field(None, description="A fixed value (not secret).")
    value_from: SecretValue | None = Field(None, description="A value from a Secret.")

    @model_validator(mode="after")
    def _one_value(self) -> Self:
        if (self.value is None) == (self.value_from is None):
            raise ValueError(f"header {self.name}: set exactly one of value and value_from")
        if problem := header_name_problem(self.name):
            raise ValueError(problem)
        if self.value is not None and any(c in self.value for c in "\r\n\0"):
            raise ValueError(f"header {self.name}: the value contains a line break or NUL")
        return self


class RunConfigTokenExchange(RunConfigModel):
    """OAuth 2.0 Token Exchange (RFC 8693): the caller's token is exchanged for the upstream's."""

    token_url: str = Field(
        ..., min_length=1, description="The authorization server's token endpoint."
    )
    client_id: str = Field(..., min_length=1, description="The proxy's client id there.")
    client_secret: SecretValue | None = Field(
        None, description="The proxy's client secret; null: a public client."
    )
    client_auth: ClientAuthMethod = Field(
        "client_secret_basic", description="How the client secret is sent."
    )
    audience: str | None = Field(None, description="`audience` of the token asked for.")
    scopes: list[str] = Field(default_factory=list, description="`scope` of the token asked for.")
    subject_token_type: str = Field(
        TOKEN_TYPE_ACCESS_TOKEN, min_length=1, description="`subject_token_type` sent."
    )

    @model_validator(mode="after")
    def _token_url(self) -> Self:
        # A token endpoint is configured by the platform, so it may be internal.
        if problem := remote_url_problem(self.token_url, allow_private=True):
            raise ValueError(f"token_exchange.token_url: {problem}")
        return self


class RunConfigOutgoingAuth(RunConfigModel):
    """How the proxy authenticates to its upstream; exactly the member named by `type` is set."""

    type: OutgoingAuthType = Field(..., description="The kind of authentication.")
    config_name: str = Field(
        ..., min_length=1, description="The MCPExternalAuthConfig it comes from (for logs)."
    )
    bearer_token: SecretValue | None = Field(
        None, description="`bearerToken`: sent as `Authorization: Bearer <value>`."
    )
    header_injection: RunConfigHeader | None = Field(
        None, description="`headerInjection`: one header whose value comes from a Secret."
    )
    token_exchange: RunConfigTokenExchange | None = Field(
        None, description="`tokenExchange`: the caller's token exchanged per RFC 8693."
    )

    @model_validator(mode="after")
    def _member_for_type(self) -> Self:
        members = {
            "bearerToken": "bearer_token",
            "headerInjection": "header_injection",
            "tokenExchange": "token_exchange",
        }
        wanted = members.get(self.type)
        for member in members.values():
            present = getattr(self, member) is not None
            if member == wanted and not present:
                raise ValueError(f"outgoing_auth.{member}: required when type is {self.type}")
            if member != wanted and present:
                raise ValueError(f"outgoing_auth.{member}: not allowed when type is {self.type}")
        if self.header_injection is not None and self.header_injection.value_from is None:
            raise ValueError("outgoing_auth.header_injection: the value must come from a Secret")
        return self


class RunConfigRemote(RunConfigModel):
    """The remote MCP server an MCPRemoteProxy fronts: there is no workload to create."""

    url: str = Field(..., min_length=1, description="The remote MCP endpoint.")
    transport: RemoteTransport = Field(
        "streamable-http", description="How the remote server speaks MCP."
    )
    headers: list[RunConfigHeader] = Field(
        default_factory=list, description="Headers added to every request sent to the remote."
    )
    allow_private_endpoint: bool = Field(
        False, description="Allow a private or loopback address (also after DNS resolution)."
    )

    @model_validator(mode="after")
    def _url_and_headers(self) -> Self:
        if problem := remote_url_problem(self.url, allow_private=self.allow_private_endpoint):
            raise ValueError(f"remote.url: {problem}")
        if duplicates := find_duplicate_headers([h.name for h in self.headers]):
            raise ValueError(f"remote.headers: duplicate names {duplicates}")
        return self


# --- aggregate: a VirtualMCPServer's backends (the aggregator mode of the proxy runner) ---

AggregateBackendKind = Literal["MCPServer", "MCPRemoteProxy"]
"""The kind of Moorage resource an aggregated backend is."""
ConflictStrategy = Literal["prefix", "priority", "manual"]
"""How the aggregator resolves two backends exposing the same name."""
SEPARATOR_PATTERN: Final = r"^[-_.]{1,4}$"
"""A prefix separator: characters a tool name may hold that are not letters or digits."""
DNS_LABEL_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


class RunConfigAggregateBackend(RunConfigModel):
    """One member of an aggregate: an MCP server over HTTP, usually another Moorage proxy."""

    name: str = Field(
        ..., pattern=DNS_LABEL_PATTERN, description="The backend's name (a DNS label, unique)."
    )
    kind: AggregateBackendKind = Field("MCPServer", description="The Moorage kind it is.")
    url: str = Field(
        ...,
        min_length=1,
        description="Its MCP endpoint: the member proxy's in-cluster URL (any URL locally).",
    )
    transport: RemoteTransport = Field("streamable-http", description="How it speaks MCP.")
    outgoing_auth: RunConfigOutgoingAuth | None = Field(
        None, description="Authentication to this backend; null: none."
    )
    tools_filter: list[str] = Field(
        default_factory=list,
        description="The backend's tools (after its `tools_override`) to take; empty: all.",
    )
    tools_override: dict[str, RunConfigToolOverride] = Field(
        default_factory=dict,
        description="Renames before merging, keyed by the backend's own tool name.",
    )

    @model_validator(mode="after")
    def _url(self) -> Self:
        # Members are in-cluster Services, so private addresses are the normal case.
        if problem := remote_url_problem(self.url, allow_private=True):
            raise ValueError(f"backend {self.name}: url: {problem}")
        return self


class RunConfigConflictResolution(RunConfigModel):
    """How names two backends share are exposed; see docs/architecture.md "Aggregation"."""

    strategy: ConflictStrategy = Field(
        "prefix",
        description=(
            "`prefix`: every name becomes `<backend><separator><name>`; `priority`: the first "
            "backend of `priority` wins, the others are shadowed; `manual`: `manual` names "
            "each conflicting tool or prompt, what it leaves unresolved is left out and reported."
        ),
    )
    separator: str = Field(
        "_", pattern=SEPARATOR_PATTERN, description="Between backend and name (`prefix`)."
    )
    priority: list[str] = Field(
        default_factory=list,
        description="Backend names, first wins (`priority`); backends not listed come after.",
    )
    manual: dict[str, str] = Field(
        default_factory=dict,
        description="`<backend>/<name>` → the name clients see (`manual`).",
    )

    @model_validator(mode="after")
    def _members_for_strategy(self) -> Self:
        if self.priority and self.strategy != "priority":
            raise ValueError("conflict_resolution.priority: only with strategy priority")
        if self.manual and self.strategy != "manual":
            raise ValueError("conflict_resolution.manual: only with strategy manual")
        if duplicates := find_duplicates(self.priority):
            raise ValueError(f"conflict_resolution.priority: duplicate backends {duplicates}")
        for key, exposed in self.manual.items():
            backend, slash, name = key.partition("/")
            if not (backend and slash and name):
                raise ValueError(
                    f"conflict_resolution.manual: key {key!r} must be '<backend>/<name>'"
                )
            if not exposed:
                raise ValueError(f"conflict_resolution.manual: {key!r} maps to an empty name")
        if duplicates := find_duplicates(list(self.manual.values())):
            raise ValueError(f"conflict_resolution.manual: names exposed twice {duplicates}")
        return self


class RunConfigAggregate(RunConfigModel):
    """The backends of a VirtualMCPServer and how their lists are merged into one."""

    backends: list[RunConfigAggregateBackend] = Field(
        ..., min_length=1, description="The member servers, in the order their names are merged."
    )
    conflict_resolution: RunConfigConflictResolution = Field(
        RunConfigConflictResolution(), description="How shared names are exposed."
    )
    health_check_interval_seconds: int = Field(
        30, ge=1, le=3600, description="How often each backend is checked."
    )
    backend_timeout_seconds: int = Field(
        30, ge=1, le=3600, description="How long a request to a backend may take at most."
    )

    @model_validator(mode="after")
    def _names(self) -> Self:
        names = [backend.name for backend in self.backends]
        if duplicates := find_duplicates(names):
            raise ValueError(f"aggregate.backends: duplicate names {duplicates}")
        resolution = self.conflict_resolution
        if unknown := [name for name in resolution.priority if name not in names]:
            raise ValueError(f"conflict_resolution.priority: unknown backends {unknown}")
        unknown = [key for key in resolution.manual if key.partition("/")[0] not in names]
        if unknown:
            raise ValueError(f"conflict_resolution.manual: unknown backends in {unknown}")
        return self


# -- shared state and rate limits (spec.sessionStorage, spec.rateLimits) --------------------


class RunConfigConfigMapKey(RunConfigModel):
    """A key of a ConfigMap in the proxy's namespace."""

    name: ObjectName = Field(..., description="ConfigMap name.")
    key: ConfigMapKey = Field(..., description="Key in the ConfigMap's data.")


class RunConfigRedisTLS(RunConfigModel):
    """TLS to Redis."""

    enabled: bool = Field(False, description="Connect with TLS.")
    ca_config_map_ref: RunConfigConfigMapKey | None = Field(
        None,
        description="The PEM CA bundle to trust (read by the proxy at start); null: system CAs.",
    )
    ca_file: str | None = Field(
        None, description="A PEM CA bundle file (local runs); null: system CAs."
    )
    insecure_skip_verify: bool = Field(False, description="Do not verify the certificate.")


class RunConfigRedisSentinel(RunConfigModel):
    master_name: str = Field(..., min_length=1, description="The monitored primary's name.")
    addresses: list[RedisAddress] = Field(..., min_length=1, description="Sentinels' host:port.")


class RunConfigRedis(RunConfigModel):
    """A Redis server; the password only as a `SecretValue` (an env var of the proxy)."""

    address: RedisAddress = Field(..., description="`host:port`.")
    password: SecretValue | None = Field(None, description="`AUTH` password; null: none.")
    tls: RunConfigRedisTLS | None = Field(None, description="TLS; null: plain TCP.")
    key_prefix: KeyPrefix = Field(..., description="Start of every key the proxy writes.")
    db: int = Field(0, ge=0, description="Database number.")
    sentinel: RunConfigRedisSentinel | None = Field(None, description="Sentinel discovery.")


class RunConfigSessionStorage(RunConfigModel):
    """Where the proxy keeps what its replicas share; `redis` is set exactly for type redis.

    Not live: a change rolls the proxy (a new connection is opened at start only)."""

    type: SessionStorageType = Field("memory", description="`memory` or `redis`.")
    redis: RunConfigRedis | None = Field(None, description="The Redis server for `redis`.")

    @model_validator(mode="after")
    def _redis_for_type(self) -> Self:
        if (self.type == "redis") != (self.redis is not None):
            raise ValueError("session_storage.redis: set exactly when type is redis")
        return self


class RunConfigRateLimit(RunConfigModel):
    """One token bucket."""

    requests_per_minute: int = Field(..., ge=1, le=MAX_REQUESTS_PER_MINUTE, description="Rate.")
    burst: int = Field(..., ge=1, le=MAX_BURST, description="Requests allowed at once.")


class RunConfigToolRateLimit(RunConfigRateLimit):
    tool: str = Field(..., min_length=1, description="Tool name as clients see it.")
    per_subject: bool = Field(True, description="A bucket per subject (true) or one for all.")


class RunConfigRateLimits(RunConfigModel):
    """Token-bucket rate limits; live: a change applies to the next request."""

    per_subject: RunConfigRateLimit | None = Field(None, description="Every request of a subject.")
    per_tool: list[RunConfigToolRateLimit] = Field(
        default_factory=list, description="`tools/call` of one tool each."
    )
    when_unavailable: WhenUnavailable = Field(
        "allow", description="While the store cannot be reached: `allow` or `deny`."
    )

    @model_validator(mode="after")
    def _unique_tools(self) -> Self:
        tools = [limit.tool for limit in self.per_tool]
        if len(set(tools)) != len(tools):
            raise ValueError("rate_limits.per_tool: each tool is limited once")
        return self


REDIS_PASSWORD_ENV: Final = "MOORAGE_REDIS_PASSWORD"  # noqa: S105 (a variable name)
"""The proxy container's variable holding the Redis password (from `passwordSecretRef`)."""


def runconfig_session_storage(
    storage: SessionStorage, *, namespace: str, name: str
) -> RunConfigSessionStorage:
    """`spec.sessionStorage` as the RunConfig carries it: the password as an env reference, the
    key prefix defaulted to `moorage:<namespace>:<name>:`."""
    redis = storage.redis
    if redis is None:
        return RunConfigSessionStorage(type=storage.type)
    secret = redis.password_secret_ref
    tls = redis.tls
    ca = tls.ca_config_map_ref if tls is not None else None
    return RunConfigSessionStorage(
        type=storage.type,
        redis=RunConfigRedis(
            address=redis.address,
            password=None
            if secret is None
            else SecretValue(
                env=REDIS_PASSWORD_ENV,
                secret_key_ref=SecretKeyRef(name=secret.name, key=secret.key),
            ),
            tls=None
            if tls is None
            else RunConfigRedisTLS(
                enabled=tls.enabled,
                ca_config_map_ref=None
                if ca is None
                else RunConfigConfigMapKey(name=ca.name, key=ca.key),
                insecure_skip_verify=tls.insecure_skip_verify,
            ),
            key_prefix=redis.key_prefix or default_key_prefix(namespace, name),
            db=redis.db,
            sentinel=None
            if redis.sentinel is None
            else RunConfigRedisSentinel(
                master_name=redis.sentinel.master_name, addresses=list(redis.sentinel.addresses)
            ),
        ),
    )


def runconfig_rate_limits(limits: RateLimits | None) -> RunConfigRateLimits | None:
    """`spec.rateLimits` as the RunConfig carries it."""
    if limits is None:
        return None
    return RunConfigRateLimits.model_validate(limits.model_dump(by_alias=False))


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
    image: str = Field(
        "", description="Image of the `mcp` container; empty (and required to be) with `remote`."
    )
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
    proxy_replicas: int | None = Field(
        None,
        ge=0,
        description=(
            "A stdio server's proxy replicas when they share sessions through Redis: the "
            "StatefulSet runs that many backend pods, one per proxy replica, each proxy holding "
            "a Lease on its ordinal; null: one backend pod, attached by the proxy (not managed, "
            "or one replica)."
        ),
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
    remote: RunConfigRemote | None = Field(
        None, description="The remote server of an MCPRemoteProxy; null: the proxy runs a workload."
    )
    outgoing_auth: RunConfigOutgoingAuth | None = Field(
        None, description="Authentication to the upstream (HTTP and remote backends); null: none."
    )
    aggregate: RunConfigAggregate | None = Field(
        None,
        description=(
            "The backends of a VirtualMCPServer: the proxy runner aggregates them; null: it does "
            "not. With `aggregate` there is no workload and no `remote`."
        ),
    )
    session_storage: RunConfigSessionStorage = Field(
        RunConfigSessionStorage(), description="Where shared state is kept (rate limits)."
    )
    rate_limits: RunConfigRateLimits | None = Field(
        None, description="Token-bucket rate limits; null: none."
    )

    @model_validator(mode="after")
    def _workload_or_remote(self) -> Self:
        if self.aggregate is not None:
            return self._no_workload("aggregate")
        if self.remote is None:
            if not self.image:
                raise ValueError("image: required unless remote is set (or aggregate)")
            if self.outgoing_auth is not None and self.transport == "stdio":
                raise ValueError("outgoing_auth: a stdio server has no upstream to authenticate to")
            return self
        return self._no_workload("remote")

    def _no_workload(self, mode: str) -> Self:
        workload = {
            "image": self.image,
            "args": self.args,
            "env": self.env,
            "secret_env": self.secret_env,
            "backend_replicas": self.backend_replicas,
            "proxy_replicas": self.proxy_replicas,
            "pod_template_spec": self.pod_template_spec,
            "resources": self.resources,
        }
        if set_fields := [key for key, value in workload.items() if value]:
            raise ValueError(f"{', '.join(set_fields)}: not allowed with {mode} (no workload)")
        if mode == "aggregate":
            if self.remote is not None:
                raise ValueError("remote: not allowed with aggregate")
            if self.outgoing_auth is not None:
                raise ValueError("outgoing_auth: not allowed with aggregate; set it per backend")
        return self


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
