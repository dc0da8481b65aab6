"""What the proxy adds to every upstream request: configured headers and outgoing authentication.

Built once at start-up from the RunConfig's `remote.headers` and `outgoing_auth`, with secret
values read from the proxy's own environment (`SecretValue.env`): a variable that is not set
is a start-up error naming it. Per request, `OutgoingAuth.headers` gives the headers to add:
the fixed ones, and with `tokenExchange` an `Authorization` carrying the token exchanged for
the caller's. The caller's own `Authorization` never goes upstream (the reverse backend
forwards only the MCP headers it names); these headers are the only credentials that do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from moorage_api.runconfig import RunConfig, RunConfigHeader, SecretValue
from moorage_core.startup import StartupFailure
from moorage_proxyrunner.backends.remote.exchange import (
    ExchangeConfig,
    ExchangeFailed,
    TokenExchanger,
)
from moorage_proxyrunner.protocol.pipeline import Identity


def secret_value(secret: SecretValue, environ: Mapping[str, str], *, setting: str) -> str:
    """The value of `secret` from `environ`; a `StartupFailure` naming the variable otherwise."""
    value = environ.get(secret.env)
    if value is None:
        raise StartupFailure(
            setting,
            f"environment variable {secret.env} is not set",
            hint="set it to the secret's value (in a cluster the operator sets it from the Secret)",
        )
    if any(c in value for c in "\r\n\0"):
        raise StartupFailure(
            setting,
            f"environment variable {secret.env} contains a line break or NUL",
            hint="a header value is one line",
        )
    return value


def header_value(header: RunConfigHeader, environ: Mapping[str, str], *, setting: str) -> str:
    if header.value_from is not None:
        return secret_value(header.value_from, environ, setting=f"{setting} {header.name}")
    assert header.value is not None, "RunConfigHeader has exactly one of value and value_from"
    return header.value


def fixed_headers(rc: RunConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """The headers every upstream request carries: `remote.headers`, then `bearerToken` or
    `headerInjection`."""
    headers: dict[str, str] = {}
    if rc.remote is not None:
        for header in rc.remote.headers:
            headers[header.name] = header_value(header, environ, setting="remote.headers")
    auth = rc.outgoing_auth
    if auth is not None and auth.bearer_token is not None:
        token = secret_value(auth.bearer_token, environ, setting="outgoing_auth.bearer_token")
        headers["Authorization"] = f"Bearer {token}"
    if auth is not None and auth.header_injection is not None:
        injected = auth.header_injection
        headers[injected.name] = header_value(
            injected, environ, setting="outgoing_auth.header_injection"
        )
    return headers


def exchange_config(rc: RunConfig, environ: Mapping[str, str]) -> ExchangeConfig | None:
    """The token exchange of `outgoing_auth`, with its client secret read; None without one.
    A `StartupFailure` when there is no authenticated caller whose token could be exchanged."""
    auth = rc.outgoing_auth
    if auth is None or auth.token_exchange is None:
        return None
    if rc.oidc is None:
        raise StartupFailure(
            "outgoing_auth.token_exchange",
            "token exchange needs an authenticated caller, and oidc is off",
            hint="turn on oidc, or use another outgoing authentication type",
        )
    exchange = auth.token_exchange
    secret = (
        secret_value(
            exchange.client_secret, environ, setting="outgoing_auth.token_exchange.client_secret"
        )
        if exchange.client_secret is not None
        else None
    )
    return ExchangeConfig(
        token_url=exchange.token_url,
        client_id=exchange.client_id,
        client_secret=secret,
        client_auth=exchange.client_auth,
        audience=exchange.audience,
        scopes=tuple(exchange.scopes),
        subject_token_type=exchange.subject_token_type,
    )


def check_outgoing_secrets(rc: RunConfig, environ: Mapping[str, str]) -> None:
    """A `StartupFailure` now, before anything is applied, when a secret the upstream requests
    need is missing (or token exchange has no caller to exchange for)."""
    fixed_headers(rc, environ)
    exchange_config(rc, environ)


@dataclass(slots=True)
class OutgoingAuth:
    """The headers for one upstream request on behalf of a caller."""

    fixed: dict[str, str] = field(default_factory=dict)
    exchanger: TokenExchanger | None = None

    async def headers(self, caller: Identity | None) -> dict[str, str]:
        """`fixed`, plus the exchanged token; `ExchangeFailed` when it cannot be had. Without a
        caller (the proxy's own health check) nothing is exchanged."""
        if self.exchanger is None or caller is None:
            return self.fixed
        if caller.token is None:
            raise ExchangeFailed("the request carries no token to exchange", status=401)
        token = await self.exchanger.token_for(caller.token)
        return {**self.fixed, "Authorization": f"Bearer {token}"}

    async def close(self) -> None:
        if self.exchanger is not None:
            await self.exchanger.close()
