"""Outgoing authentication: an MCPExternalAuthConfig turned into the RunConfig's `outgoing_auth`,
and the Secret-backed env of the proxy container that goes with it.

Secrets never pass the operator: the RunConfig names each secret value by an env variable
(`SecretValue.env`, with the Secret key it comes from), and the proxy Deployment's container gets
that variable as `valueFrom.secretKeyRef`. The variable names are fixed per role, so the same
config always renders the same RunConfig and Deployment:

- `MOORAGE_OUTGOING_TOKEN`: a `bearerToken`;
- `MOORAGE_OUTGOING_HEADER`: a `headerInjection` value;
- `MOORAGE_TOKEN_EXCHANGE_CLIENT_SECRET`: a `tokenExchange` client secret;
- `MOORAGE_HEADER_<n>`: the n-th (from 0) of an MCPRemoteProxy's `headerForward.addHeadersFromSecret`.

A missing or unusable config is a `Problem` of condition `AuthConfigValid` naming it; the
referrer is `Failed` until it appears (the config is watched).

The config's own status: `Valid` and `referencedBy` (the referrers, as `mcpgroups.Member`s
without a phase).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from pydantic import ValidationError

from moorage_api.base import SecretKeySelector, validation_messages
from moorage_api.mcpexternalauthconfig import (
    MCPExternalAuthConfigConditionType,
    MCPExternalAuthConfigSpec,
    parse_mcpexternalauthconfig,
)
from moorage_api.mcpserver import MCPServerConditionType
from moorage_api.references import ExternalAuthConfigRef
from moorage_api.runconfig import (
    RunConfigHeader,
    RunConfigOutgoingAuth,
    RunConfigRemote,
    RunConfigTokenExchange,
    SecretKeyRef,
    SecretValue,
)
from moorage_operator.planning.conditions import ConditionSpec, merge_conditions
from moorage_operator.planning.mcpgroups import Member
from moorage_operator.planning.problems import Problem
from moorage_operator.planning.proxies import secret_env

JsonObject = dict[str, Any]

ENV_OUTGOING_TOKEN: Final = "MOORAGE_OUTGOING_TOKEN"  # noqa: S105 (an env name, not a secret)
ENV_OUTGOING_HEADER: Final = "MOORAGE_OUTGOING_HEADER"
ENV_TOKEN_EXCHANGE_CLIENT_SECRET: Final = "MOORAGE_TOKEN_EXCHANGE_CLIENT_SECRET"  # noqa: S105
ENV_HEADER_PREFIX: Final = "MOORAGE_HEADER_"


def forwarded_header_env(index: int) -> str:
    """Env name of the `index`-th header an MCPRemoteProxy adds from a Secret."""
    return f"{ENV_HEADER_PREFIX}{index}"


def secret_values_env(values: Iterable[SecretValue | None]) -> list[JsonObject]:
    """The container env for `values` (those with a Secret key; a local one has none)."""
    return [
        secret_env(value.env, value.secret_key_ref)
        for value in values
        if value is not None and value.secret_key_ref is not None
    ]


def outgoing_secret_values(auth: RunConfigOutgoingAuth | None) -> list[SecretValue | None]:
    """Every secret value an outgoing authentication names."""
    if auth is None:
        return []
    return [
        auth.bearer_token,
        auth.header_injection.value_from if auth.header_injection else None,
        auth.token_exchange.client_secret if auth.token_exchange else None,
    ]


def outgoing_secret_env(auth: RunConfigOutgoingAuth | None) -> list[JsonObject]:
    """The proxy container's env for the secrets `auth` names."""
    return secret_values_env(outgoing_secret_values(auth))


def remote_secret_env(remote: RunConfigRemote | None) -> list[JsonObject]:
    """The proxy container's env for the headers a remote proxy adds from Secrets."""
    if remote is None:
        return []
    return secret_values_env(header.value_from for header in remote.headers)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def external_auth_config_name_of(obj: Mapping[str, Any]) -> str | None:
    """The MCPExternalAuthConfig a raw MCPServer or MCPRemoteProxy names, if any."""
    name = _mapping(_mapping(obj.get("spec")).get("externalAuthConfigRef")).get("name")
    return name if isinstance(name, str) and name else None


def secret_value(env: str, ref: SecretKeySelector) -> SecretValue:
    """A secret the proxy reads from env variable `env`, set from the Secret key `ref`."""
    return SecretValue(env=env, secret_key_ref=SecretKeyRef(name=ref.name, key=ref.key))


def _token_exchange(spec: MCPExternalAuthConfigSpec) -> RunConfigTokenExchange | None:
    exchange = spec.token_exchange
    if exchange is None:
        return None
    secret = exchange.client_secret_ref
    return RunConfigTokenExchange(
        token_url=exchange.token_url,
        client_id=exchange.client_id,
        client_secret=secret_value(ENV_TOKEN_EXCHANGE_CLIENT_SECRET, secret) if secret else None,
        client_auth=exchange.client_auth_method,
        audience=exchange.audience,
        scopes=list(exchange.scopes),
        subject_token_type=exchange.subject_token_type,
    )


def desired_outgoing_auth(name: str, spec: MCPExternalAuthConfigSpec) -> RunConfigOutgoingAuth:
    """The RunConfig's `outgoing_auth` for config `name`: its secrets as env references."""
    bearer, injection = spec.bearer_token, spec.header_injection
    return RunConfigOutgoingAuth(
        type=spec.type,
        config_name=name,
        bearer_token=secret_value(ENV_OUTGOING_TOKEN, bearer.secret_ref) if bearer else None,
        header_injection=(
            RunConfigHeader(
                name=injection.header_name,
                value_from=secret_value(ENV_OUTGOING_HEADER, injection.value_secret_ref),
            )
            if injection
            else None
        ),
        token_exchange=_token_exchange(spec),
    )


def resolve_outgoing_auth(
    ref: ExternalAuthConfigRef | None, *, config: Mapping[str, Any] | None
) -> tuple[RunConfigOutgoingAuth | None, Problem | None]:
    """`outgoing_auth` from the config `ref` names (`config`: None when it does not exist)."""
    if ref is None:
        return None, None
    if config is None:
        return None, Problem(
            MCPServerConditionType.AUTH_CONFIG_VALID,
            "ExternalAuthConfigNotFound",
            f'MCPExternalAuthConfig "{ref.name}" not found',
            missing=True,
        )
    try:
        parsed = parse_mcpexternalauthconfig(dict(config))
    except ValidationError as exc:
        return None, Problem(
            MCPServerConditionType.AUTH_CONFIG_VALID,
            "ExternalAuthConfigInvalid",
            f'MCPExternalAuthConfig "{ref.name}" is invalid: '
            + "; ".join(validation_messages(exc)),
        )
    return desired_outgoing_auth(ref.name, parsed.spec), None


# -- the MCPExternalAuthConfig's own status -------------------------------------------------------

STATUS_FIELDS: Final = ("observedGeneration", "conditions", "referencedBy")
"""Every status field the operator writes (and so may remove)."""


def compute_external_auth_status(
    obj: Mapping[str, Any], *, referrers: Sequence[Member], previous: Mapping[str, Any], now: str
) -> JsonObject:
    """`Valid`, and `referencedBy`: the MCPServers and MCPRemoteProxies naming the config, sorted
    by kind then name (wire form)."""
    generation = _mapping(obj.get("metadata")).get("generation")
    try:
        spec = parse_mcpexternalauthconfig(dict(obj)).spec
    except ValidationError as exc:
        valid = ConditionSpec(
            MCPExternalAuthConfigConditionType.VALID,
            "False",
            "Invalid",
            "Invalid MCPExternalAuthConfig: " + "; ".join(validation_messages(exc)),
        )
    else:
        valid = ConditionSpec(
            MCPExternalAuthConfigConditionType.VALID,
            "True",
            "Valid",
            f"The configuration is valid ({spec.type})",
        )
    status: JsonObject = {
        "conditions": merge_conditions(
            previous.get("conditions") or [],
            [valid],
            generation=generation if isinstance(generation, int) else None,
            now=now,
        ),
        "referencedBy": [
            {"kind": r.kind, "name": r.name} for r in sorted(referrers, key=lambda r: r.order)
        ],
    }
    if isinstance(generation, int):
        status["observedGeneration"] = generation
    return status
