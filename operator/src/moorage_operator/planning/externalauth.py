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

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from moorage_api.runconfig import RunConfigOutgoingAuth, RunConfigRemote, SecretValue
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
