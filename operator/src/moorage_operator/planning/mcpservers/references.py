"""What an MCPServer refers to, and what those references resolved to.

An MCPServer may name an MCPToolConfig (`toolConfigRef`) and ConfigMaps (`oidcConfig.configMap`,
`authzConfig.configMap`, a `configMap` permission profile), all in its own namespace. The
reconciler reads them from its caches and hands them in as `References`; this module

- names what a raw MCPServer references (`tool_config_name_of`, `config_map_names_of`), for the
  cache indexes that map a changed ConfigMap or MCPToolConfig back to the servers using it;
- checks what was found and turns it into the RunConfig's parts (`resolve_inputs`), or into
  `Problem`s naming the missing or unusable object, which the status reports.

Pure: no I/O. Referenced documents are parsed with `moorage_api.documents`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

from pydantic import ValidationError

from moorage_api.base import validation_messages
from moorage_api.documents import (
    DocumentError,
    PermissionProfileDocument,
    parse_authz_document,
    parse_oidc_document,
    parse_permission_profile,
)
from moorage_api.mcpserver import (
    AuthzConfig,
    InlineAuthzConfig,
    InlineOIDCConfig,
    KubernetesOIDCConfig,
    MCPServerConditionType,
    MCPServerSpec,
    OIDCConfig,
    ToolConfigRef,
)
from moorage_api.mcptoolconfig import MCPToolConfigSpec, parse_mcptoolconfig
from moorage_api.references import ExternalAuthConfigRef
from moorage_api.runconfig import (
    RunConfigAuthz,
    RunConfigOIDC,
    RunConfigOutgoingAuth,
    RunConfigPermissionProfile,
)
from moorage_operator.planning.externalauth import resolve_outgoing_auth
from moorage_operator.planning.problems import Problem

JsonObject = dict[str, Any]

__all__ = [
    "ClientInputs",
    "ClientSpec",
    "Problem",
    "References",
    "Resolution",
    "ResolvedInputs",
    "config_map_names_of",
    "resolve_client_inputs",
    "resolve_inputs",
    "tool_config_name_of",
]

DEFAULT_PROFILE_KEY: Final = "profile.json"
"""Key of a configMap permission profile when the reference names none."""
DEFAULT_PERMISSION_PROFILE: Final = RunConfigPermissionProfile(type="builtin", name="network")


class ClientSpec(Protocol):
    """What a proxy's clients get, as both an MCPServer's and an MCPRemoteProxy's spec say it:
    authentication, authorisation and a tool filter."""

    @property
    def tool_config_ref(self) -> ToolConfigRef | None: ...

    @property
    def oidc_config(self) -> OIDCConfig | None: ...

    @property
    def authz_config(self) -> AuthzConfig | None: ...

    @property
    def external_auth_config_ref(self) -> ExternalAuthConfigRef | None: ...


@dataclass(frozen=True, slots=True)
class References:
    """The referenced objects the reconciler found, as raw JSON from its caches.

    Invariant: only objects in the MCPServer's namespace; `config_maps` holds those found, keyed
    by name (a referenced name missing from it does not exist).
    """

    tool_config: JsonObject | None = None
    """The MCPToolConfig named by `toolConfigRef`, or None when it does not exist."""
    config_maps: Mapping[str, JsonObject] = field(default_factory=dict)
    external_auth_config: JsonObject | None = None
    """The MCPExternalAuthConfig named by `externalAuthConfigRef`, or None when it does not
    exist."""
    group: JsonObject | None = None
    """The MCPGroup named by `groupRef`, or None when it does not exist."""


@dataclass(frozen=True, slots=True)
class ResolvedInputs:
    """The MCPServer's references, turned into the RunConfig's parts."""

    tools_filter: tuple[str, ...] = ()
    tools_override: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Server tool name → `{name?, description?}`."""
    tool_config_hash: str | None = None
    """`configHash` of the MCPToolConfig in effect (None without `toolConfigRef`)."""
    oidc: RunConfigOIDC | None = None
    authz: RunConfigAuthz | None = None
    permission_profile: RunConfigPermissionProfile = DEFAULT_PERMISSION_PROFILE
    outgoing_auth: RunConfigOutgoingAuth | None = None


@dataclass(frozen=True, slots=True)
class Resolution:
    """Either the resolved inputs, or the problems that stop the MCPServer (never both)."""

    inputs: ResolvedInputs | None
    problems: tuple[Problem, ...] = ()


# -- what a raw MCPServer references (for cache indexes) ------------------------------------------


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def tool_config_name_of(server: Mapping[str, Any]) -> str | None:
    """The MCPToolConfig a raw MCPServer references, if any."""
    ref = _mapping(_mapping(server.get("spec")).get("toolConfigRef"))
    name = ref.get("name")
    return name if isinstance(name, str) and name else None


def config_map_names_of(server: Mapping[str, Any]) -> list[str]:
    """The ConfigMaps a raw MCPServer references (oidc, authz, permission profile), deduplicated."""
    spec = _mapping(server.get("spec"))
    names: list[str] = []
    for section in ("oidcConfig", "authzConfig"):
        config = _mapping(spec.get(section))
        if config.get("type") == "configMap":
            name = _mapping(config.get("configMap")).get("name")
            if isinstance(name, str) and name:
                names.append(name)
    profile = _mapping(spec.get("permissionProfile"))
    if profile.get("type") == "configMap" and isinstance(profile.get("name"), str):
        names.append(str(profile["name"]))
    return list(dict.fromkeys(names))


# -- MCPToolConfig ----------------------------------------------------------------------------------


def compute_config_hash(spec: MCPToolConfigSpec) -> str:
    """A stable hash of an MCPToolConfig's spec: its `status.configHash` and the referring
    MCPServers' `status.toolConfigHash`. Order of the filter does not matter (it is a set)."""
    data = spec.model_dump(mode="json", by_alias=True)
    data["toolsFilter"] = sorted(data.get("toolsFilter") or [])
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _resolve_tool_config(
    spec: ClientSpec, references: References
) -> tuple[MCPToolConfigSpec | None, Problem | None]:
    ref = spec.tool_config_ref
    if ref is None:
        return None, None
    raw = references.tool_config
    if raw is None:
        return None, Problem(
            MCPServerConditionType.TOOL_CONFIG_RESOLVED,
            "ToolConfigNotFound",
            f'MCPToolConfig "{ref.name}" not found',
            missing=True,
        )
    try:
        tool_config = parse_mcptoolconfig(raw)
    except ValidationError as exc:
        detail = "; ".join(validation_messages(exc))
        return None, Problem(
            MCPServerConditionType.TOOL_CONFIG_RESOLVED,
            "ToolConfigInvalid",
            f'MCPToolConfig "{ref.name}" is invalid: {detail}',
        )
    return tool_config.spec, None


# -- ConfigMap documents ----------------------------------------------------------------------------


DocumentT = TypeVar("DocumentT")


@dataclass(frozen=True, slots=True)
class _DocumentRef:
    """Where a referenced JSON document is and how to report trouble with it."""

    name: str
    key: str
    field_path: str
    condition: str | None
    invalid_reason: str
    what: str
    """What the document holds, for messages ("OIDC configuration")."""


def _read_document(
    references: References, ref: _DocumentRef, parse: Callable[[str, str], DocumentT]
) -> DocumentT | Problem:
    """The parsed document `ref` points at, or the problem naming what is missing or wrong."""
    config_map = references.config_maps.get(ref.name)
    if config_map is None:
        return Problem(
            ref.condition,
            "ConfigMapNotFound",
            f'ConfigMap "{ref.name}" not found ({ref.field_path})',
            missing=True,
        )
    text = _mapping(config_map.get("data")).get(ref.key)
    if not isinstance(text, str):
        return Problem(
            ref.condition,
            "ConfigMapKeyNotFound",
            f'ConfigMap "{ref.name}" has no key "{ref.key}" ({ref.field_path})',
            missing=True,
        )
    try:
        return parse(text, ref.key)
    except DocumentError as exc:
        return Problem(
            ref.condition,
            ref.invalid_reason,
            f'ConfigMap "{ref.name}" holds an invalid {ref.what}: {exc}',
        )


def _parse_oidc(text: str, key: str) -> InlineOIDCConfig:
    return parse_oidc_document(text, key=key)


def _parse_authz(text: str, key: str) -> InlineAuthzConfig:
    return parse_authz_document(text, key=key)


def _parse_profile(text: str, key: str) -> PermissionProfileDocument:
    return parse_permission_profile(text, key=key)


def _oidc_from_inline(inline: InlineOIDCConfig) -> RunConfigOIDC:
    return RunConfigOIDC(
        type="oidc",
        issuer=inline.issuer,
        audience=inline.audience,
        jwks_url=inline.jwks_url,
        client_id=inline.client_id,
        required_scopes=list(inline.required_scopes),
    )


def _oidc_from_kubernetes(config: KubernetesOIDCConfig) -> RunConfigOIDC:
    return RunConfigOIDC(
        type="kubernetes",
        issuer=config.issuer,
        audience=config.audience,
        allowed_service_accounts=list(config.allowed_service_accounts),
    )


def _resolve_oidc(
    spec: ClientSpec, references: References
) -> tuple[RunConfigOIDC | None, Problem | None]:
    config = spec.oidc_config
    if config is None:
        return None, None
    if config.type == "kubernetes":
        return _oidc_from_kubernetes(config.kubernetes or KubernetesOIDCConfig()), None
    if config.type == "inline":
        assert config.inline is not None  # the model requires it for this type
        return _oidc_from_inline(config.inline), None
    assert config.config_map is not None
    ref = _DocumentRef(
        name=config.config_map.name,
        key=config.config_map.key,
        field_path="spec.oidcConfig.configMap",
        condition=MCPServerConditionType.AUTH_CONFIG_VALID,
        invalid_reason="OIDCConfigInvalid",
        what="OIDC configuration",
    )
    document = _read_document(references, ref, _parse_oidc)
    if isinstance(document, Problem):
        return None, document
    return _oidc_from_inline(document), None


def _authz_from_inline(inline: InlineAuthzConfig) -> RunConfigAuthz:
    return RunConfigAuthz(policies=list(inline.policies), entities_json=inline.entities_json)


def _resolve_authz(
    spec: ClientSpec, references: References
) -> tuple[RunConfigAuthz | None, Problem | None]:
    config = spec.authz_config
    if config is None:
        return None, None
    if config.type == "inline":
        assert config.inline is not None
        return _authz_from_inline(config.inline), None
    assert config.config_map is not None
    ref = _DocumentRef(
        name=config.config_map.name,
        key=config.config_map.key,
        field_path="spec.authzConfig.configMap",
        condition=MCPServerConditionType.AUTH_CONFIG_VALID,
        invalid_reason="AuthzConfigInvalid",
        what="authorization configuration",
    )
    document = _read_document(references, ref, _parse_authz)
    if isinstance(document, Problem):
        return None, document
    return _authz_from_inline(document), None


def _resolve_profile(
    spec: MCPServerSpec, references: References
) -> tuple[RunConfigPermissionProfile, Problem | None]:
    profile = spec.permission_profile
    if profile.type == "builtin":
        return RunConfigPermissionProfile(type="builtin", name=profile.name), None
    key = profile.key or DEFAULT_PROFILE_KEY
    unresolved = RunConfigPermissionProfile(type="configMap", name=profile.name, key=key)
    ref = _DocumentRef(
        name=profile.name,
        key=key,
        field_path="spec.permissionProfile",
        condition=None,
        invalid_reason="PermissionProfileInvalid",
        what="permission profile",
    )
    document = _read_document(references, ref, _parse_profile)
    if isinstance(document, Problem):
        return unresolved, document
    resolved = RunConfigPermissionProfile(
        type="configMap", name=profile.name, key=key, outbound=document.network.outbound
    )
    return resolved, None


@dataclass(frozen=True, slots=True)
class ClientInputs:
    """What a proxy's client side resolved to (see `ClientSpec`)."""

    tool_config: MCPToolConfigSpec | None = None
    oidc: RunConfigOIDC | None = None
    authz: RunConfigAuthz | None = None
    outgoing_auth: RunConfigOutgoingAuth | None = None


def resolve_client_inputs(
    spec: ClientSpec, *, references: References
) -> tuple[ClientInputs, tuple[Problem, ...]]:
    """The client side of `spec` resolved, and every problem found on the way."""
    tool_config, tool_problem = _resolve_tool_config(spec, references)
    oidc, oidc_problem = _resolve_oidc(spec, references)
    authz, authz_problem = _resolve_authz(spec, references)
    outgoing, outgoing_problem = resolve_outgoing_auth(
        spec.external_auth_config_ref, config=references.external_auth_config
    )
    problems = tuple(
        p for p in (tool_problem, oidc_problem, authz_problem, outgoing_problem) if p is not None
    )
    inputs = ClientInputs(tool_config=tool_config, oidc=oidc, authz=authz, outgoing_auth=outgoing)
    return inputs, problems


def resolve_inputs(spec: MCPServerSpec, *, references: References) -> Resolution:
    """Resolve every reference of `spec`; all problems found, or the inputs when there are none."""
    client, client_problems = resolve_client_inputs(spec, references=references)
    profile, profile_problem = _resolve_profile(spec, references)
    problems = client_problems + ((profile_problem,) if profile_problem else ())
    if problems:
        return Resolution(inputs=None, problems=problems)
    return Resolution(inputs=resolved_inputs(client, permission_profile=profile))


def resolved_inputs(
    client: ClientInputs,
    *,
    permission_profile: RunConfigPermissionProfile = DEFAULT_PERMISSION_PROFILE,
) -> ResolvedInputs:
    """The RunConfig's parts from what the references resolved to."""
    tool_config = client.tool_config
    return ResolvedInputs(
        tools_filter=tuple(tool_config.tools_filter) if tool_config else (),
        tools_override=(
            {
                tool: override.model_dump(mode="json", exclude_none=True)
                for tool, override in tool_config.tools_override.items()
            }
            if tool_config
            else {}
        ),
        tool_config_hash=compute_config_hash(tool_config) if tool_config else None,
        oidc=client.oidc,
        authz=client.authz,
        permission_profile=permission_profile,
        outgoing_auth=client.outgoing_auth,
    )
