"""Rules for MCPExternalAuthConfig that its CRD schema cannot state.

Pure: no I/O. Runs on a parsed `moorage_api.MCPExternalAuthConfig`: the schema (and the model)
already allow exactly the sub-object matching `type`, take secrets only as Secret references (they
reach the proxy as environment variables, never through a ConfigMap) and refuse a header the
proxy sets itself. This module adds:

- `tokenExchange.scopes`: each an OAuth scope token (RFC 6749 §3.3);
- `tokenExchange.tokenUrl` on plain http: the client secret and the tokens travel unencrypted
  (warning);
- `tokenExchange.clientAuthMethod` without `clientSecretRef`: there is no secret to send
  (warning);
- on update: a changed `type` changes how every referring proxy authenticates (warning).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from moorage_api.mcpexternalauthconfig import MCPExternalAuthConfig, TokenExchangeAuth
from moorage_webhook.validation.objects import validate_object
from moorage_webhook.validation.proxysettings import scope_problem
from moorage_webhook.validation.verdict import Findings, Verdict

BASE = "spec.tokenExchange"


def _check_token_exchange(exchange: TokenExchangeAuth, out: Findings) -> None:
    if urlsplit(exchange.token_url).scheme == "http":
        out.warn(
            f"{BASE}.tokenUrl",
            "plain http: the client secret and the exchanged tokens travel unencrypted",
        )
    if exchange.client_secret_ref is None and exchange.client_auth_method != "client_secret_basic":
        out.warn(
            f"{BASE}.clientAuthMethod",
            f"{exchange.client_auth_method} is ignored without clientSecretRef (a public client)",
        )
    for index, scope in enumerate(exchange.scopes):
        if (why := scope_problem(scope)) is not None:
            out.error(f"{BASE}.scopes[{index}]", why)


def mcpexternalauthconfig_rules(
    new: MCPExternalAuthConfig,
    old: MCPExternalAuthConfig | None,
    raw: dict[str, Any],
    out: Findings,
) -> None:
    """Every MCPExternalAuthConfig rule of this module."""
    if new.spec.token_exchange is not None:
        _check_token_exchange(new.spec.token_exchange, out)
    if old is not None and old.spec.type != new.spec.type:
        out.warn(
            "spec.type",
            f"changing from {old.spec.type} to {new.spec.type} changes how every proxy "
            "referring to this config authenticates to its upstream",
        )


def validate_mcpexternalauthconfig(
    new: dict[str, Any], *, old: dict[str, Any] | None = None
) -> Verdict:
    """Validate an MCPExternalAuthConfig for admission; `old` is the stored object on an update."""
    return validate_object(
        new, old=old, model=MCPExternalAuthConfig, rules=mcpexternalauthconfig_rules
    )
