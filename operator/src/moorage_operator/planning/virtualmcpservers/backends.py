"""A VirtualMCPServer's backends: the members of its MCPGroup as the aggregator reaches them.

Each member (MCPServer or MCPRemoteProxy whose `spec.groupRef` names the group) becomes one
RunConfig backend, sorted by name:

- `url`: the member's proxy Service, with the path its clients use (`/sse` for an sse proxy,
  `/mcp` otherwise), and its `transport`;
- `outgoing_auth`: the MCPExternalAuthConfig `spec.outgoingAuth.backends[<member>]` names, or else
  the one the member names itself (`spec.externalAuthConfigRef`, "discovered"), or none. Its
  secrets reach the aggregator as env variables named per backend
  (`MOORAGE_BACKEND_<MEMBER>_<ROLE>`), so two backends never share one;
- `tools_filter`/`tools_override`: the MCPToolConfig `spec.toolConfigs[<member>]` names.

A missing or invalid config is a `Problem` naming the backend. A `tokenExchange` is used per
caller: each client session's backend sessions carry its caller's exchanged token. A member whose
spec does not parse is no backend (its own status says why). `conflict_resolution` keeps only the backends present:
a name in `priority` or `manual` that is not (yet) a member is left out, not an error.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from pydantic import ValidationError

from moorage_api.constants import DEFAULT_CLUSTER_DOMAIN, KIND_MCPREMOTEPROXY, KIND_MCPSERVER
from moorage_api.mcpremoteproxy import parse_mcpremoteproxy
from moorage_api.mcpserver import (
    AuthzConfig,
    OIDCConfig,
    ToolConfigRef,
    parse_mcpserver,
)
from moorage_api.naming import mcpremoteproxy_url, mcpserver_url
from moorage_api.outgoing import RemoteTransport
from moorage_api.references import ExternalAuthConfigRef
from moorage_api.runconfig import (
    RunConfigAggregateBackend,
    RunConfigConflictResolution,
    RunConfigOutgoingAuth,
    RunConfigToolOverride,
    SecretValue,
)
from moorage_api.virtualmcpserver import VirtualMCPServerSpec
from moorage_operator.planning.mcpservers.references import (
    References,
    resolve_client_inputs,
    resolved_inputs,
)
from moorage_operator.planning.problems import Problem

JsonObject = dict[str, Any]

ENV_BACKEND_PREFIX: Final = "MOORAGE_BACKEND_"


@dataclass(frozen=True, slots=True)
class Member:
    """A group member as a backend, before its references are resolved."""

    name: str
    kind: str
    url: str
    transport: RemoteTransport
    external_auth_config_ref: ExternalAuthConfigRef | None


@dataclass(frozen=True, slots=True)
class _BackendSide:
    """A backend's references in the shape `resolve_client_inputs` reads (no client side)."""

    tool_config_ref: ToolConfigRef | None
    external_auth_config_ref: ExternalAuthConfigRef | None
    oidc_config: OIDCConfig | None = None
    authz_config: AuthzConfig | None = None


def _name_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def server_member(obj: Mapping[str, Any], *, cluster_domain: str) -> Member | None:
    """An MCPServer as a backend; None when it does not parse."""
    try:
        server = parse_mcpserver(dict(obj))
    except ValidationError:
        return None
    mode = server.spec.effective_proxy_mode
    return Member(
        name=_name_of(obj),
        kind=KIND_MCPSERVER,
        url=mcpserver_url(
            _name_of(obj),
            namespace=server.metadata.namespace or "",
            port=server.spec.port,
            proxy_mode=mode,
            cluster_domain=cluster_domain,
        ),
        transport=mode,
        external_auth_config_ref=server.spec.external_auth_config_ref,
    )


def remote_proxy_member(obj: Mapping[str, Any], *, cluster_domain: str) -> Member | None:
    """An MCPRemoteProxy as a backend; None when it does not parse."""
    try:
        proxy = parse_mcpremoteproxy(dict(obj))
    except ValidationError:
        return None
    return Member(
        name=_name_of(obj),
        kind=KIND_MCPREMOTEPROXY,
        url=mcpremoteproxy_url(
            _name_of(obj),
            namespace=proxy.metadata.namespace or "",
            port=proxy.spec.port,
            transport=proxy.spec.transport,
            cluster_domain=cluster_domain,
        ),
        transport=proxy.spec.transport,
        external_auth_config_ref=proxy.spec.external_auth_config_ref,
    )


def group_members(
    *,
    servers: Sequence[Mapping[str, Any]],
    remote_proxies: Sequence[Mapping[str, Any]],
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN,
) -> list[Member]:
    """The members that parse, sorted by name (then kind: names may repeat across kinds)."""
    members = [server_member(obj, cluster_domain=cluster_domain) for obj in servers]
    members += [remote_proxy_member(obj, cluster_domain=cluster_domain) for obj in remote_proxies]
    return sorted((m for m in members if m is not None), key=lambda m: (m.name, m.kind))


def backend_env(backend: str, env: str) -> str:
    """`env` (a fixed `MOORAGE_<ROLE>` name) made unique to `backend`."""
    role = env.removeprefix("MOORAGE_")
    return f"{ENV_BACKEND_PREFIX}{backend.upper().replace('-', '_')}_{role}"


def _rename_secret(value: SecretValue | None, backend: str) -> SecretValue | None:
    if value is None:
        return None
    return value.model_copy(update={"env": backend_env(backend, value.env)})


def backend_outgoing_auth(auth: RunConfigOutgoingAuth, backend: str) -> RunConfigOutgoingAuth:
    """`auth` with each secret's env variable named for `backend`."""
    injection, exchange = auth.header_injection, auth.token_exchange
    return auth.model_copy(
        update={
            "bearer_token": _rename_secret(auth.bearer_token, backend),
            "header_injection": (
                injection.model_copy(
                    update={"value_from": _rename_secret(injection.value_from, backend)}
                )
                if injection
                else None
            ),
            "token_exchange": (
                exchange.model_copy(
                    update={"client_secret": _rename_secret(exchange.client_secret, backend)}
                )
                if exchange
                else None
            ),
        }
    )


@dataclass(frozen=True, slots=True)
class BackendResolution:
    """The RunConfig backends, or the problems naming the backends at fault."""

    backends: tuple[RunConfigAggregateBackend, ...] = ()
    problems: tuple[Problem, ...] = ()


def resolve_backends(
    spec: VirtualMCPServerSpec,
    *,
    members: Sequence[Member],
    tool_configs: Mapping[str, JsonObject],
    external_auth_configs: Mapping[str, JsonObject],
) -> BackendResolution:
    """Each member as a RunConfig backend (see the module docstring); `tool_configs` and
    `external_auth_configs` hold the objects found, by name."""
    backends: list[RunConfigAggregateBackend] = []
    problems: list[Problem] = []
    for member in members:
        override = spec.outgoing_auth.backends.get(member.name)
        side = _BackendSide(
            tool_config_ref=spec.tool_configs.get(member.name),
            external_auth_config_ref=(
                override.external_auth_config_ref if override else member.external_auth_config_ref
            ),
        )
        references = References(
            tool_config=(
                tool_configs.get(side.tool_config_ref.name) if side.tool_config_ref else None
            ),
            external_auth_config=(
                external_auth_configs.get(side.external_auth_config_ref.name)
                if side.external_auth_config_ref
                else None
            ),
        )
        client, found = resolve_client_inputs(side, references=references)
        if found:
            problems += [replace(p, message=f"backend {member.name}: {p.message}") for p in found]
            continue
        inputs = resolved_inputs(client)
        backends.append(
            RunConfigAggregateBackend(
                name=member.name,
                kind=member.kind,
                url=member.url,
                transport=member.transport,
                outgoing_auth=(
                    backend_outgoing_auth(inputs.outgoing_auth, member.name)
                    if inputs.outgoing_auth
                    else None
                ),
                tools_filter=list(inputs.tools_filter),
                tools_override={
                    tool: RunConfigToolOverride.model_validate(dict(value))
                    for tool, value in inputs.tools_override.items()
                },
            )
        )
    if problems:
        return BackendResolution(problems=tuple(problems))
    return BackendResolution(backends=tuple(backends))


def desired_conflict_resolution(
    spec: VirtualMCPServerSpec, *, backends: Sequence[str]
) -> RunConfigConflictResolution:
    """`spec.conflictResolution` for the backends present (others are left out)."""
    resolution = spec.conflict_resolution
    present = set(backends)
    return RunConfigConflictResolution(
        strategy=resolution.strategy,
        separator=resolution.effective_separator,
        priority=[name for name in resolution.priority or () if name in present],
        manual={
            f"{entry.backend}/{entry.tool}": entry.name
            for entry in resolution.manual or ()
            if entry.backend in present
        },
    )
