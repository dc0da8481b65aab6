"""JSON documents that MCPServers reference in ConfigMaps: OIDC settings, Cedar policies, profiles.

Pure: parsing only. The operator reads the ConfigMap, parses its key here, and renders the result
into the RunConfig; the webhook cannot see ConfigMaps, so these are the only checks such a
document gets before the operator reports it in a condition.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from moorage_api.base import validation_messages
from moorage_api.mcpserver import InlineAuthzConfig, InlineOIDCConfig


class DocumentError(ValueError):
    """A referenced document is not what it should be; the message names the key and the field."""


class OutboundNetwork(BaseModel):
    """Egress the MCP pods may use (ToolHive's permission profile format)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    insecure_allow_all: bool = Field(False, description="No egress restriction at all.")
    allow_port: list[Annotated[int, Field(ge=1, le=65535)]] = Field(
        default_factory=list, description="TCP/UDP ports any destination may be reached on."
    )
    allow_cidr: list[str] = Field(
        default_factory=list, description="Destination networks (CIDR) reachable on any port."
    )
    allow_host: list[str] = Field(
        default_factory=list,
        description="Host names; NetworkPolicies cannot express them, so they are reported only.",
    )


class NetworkPermissions(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    outbound: OutboundNetwork = Field(
        default_factory=OutboundNetwork, description="Egress permissions."
    )


class PermissionProfileDocument(BaseModel):
    """A permission profile JSON; keys other than `network` (file access) do not apply to pods."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    network: NetworkPermissions = Field(
        default_factory=NetworkPermissions, description="Network permissions."
    )


def _load_json(text: str, *, key: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DocumentError(
            f"{key}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None


ModelT = TypeVar("ModelT", bound=BaseModel)


def _validate(model: type[ModelT], text: str, *, key: str) -> ModelT:
    data = _load_json(text, key=key)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise DocumentError("; ".join(validation_messages(exc, prefix=key))) from None


def parse_oidc_document(text: str, *, key: str = "oidc.json") -> InlineOIDCConfig:
    """The `inline` OIDC fields from a ConfigMap value (camelCase JSON)."""
    return _validate(InlineOIDCConfig, text, key=key)


def parse_authz_document(text: str, *, key: str = "authz.json") -> InlineAuthzConfig:
    """The `inline` authorisation fields from a ConfigMap value (camelCase JSON)."""
    return _validate(InlineAuthzConfig, text, key=key)


def parse_permission_profile(text: str, *, key: str = "profile.json") -> PermissionProfileDocument:
    """A permission profile from a ConfigMap value."""
    return _validate(PermissionProfileDocument, text, key=key)
