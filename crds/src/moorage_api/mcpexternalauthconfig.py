"""The MCPExternalAuthConfig kind: how a proxy authenticates itself to its upstream.

Pure: models and the rules the schema can state. MCPServers (HTTP transports) and MCPRemoteProxies
reference a config through `spec.externalAuthConfigRef`; the operator turns it into the RunConfig's
`outgoing_auth`, whose secrets reach the proxy only as environment variables from Secret keys.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from moorage_api.base import (
    CONDITIONS_FIELD_EXTRA,
    HTTP_URL_MAX_LENGTH,
    HTTP_URL_PATTERN,
    LIST_SET,
    ApiModel,
    Condition,
    ObjectMeta,
    SecretKeySelector,
    check_member_for_type,
    find_duplicates,
    list_map,
    set_exactly_for_type,
    validations,
)
from moorage_api.constants import (
    KIND_MCPEXTERNALAUTHCONFIG,
    KIND_MCPREMOTEPROXY,
    KIND_MCPSERVER,
)
from moorage_api.outgoing import (
    TOKEN_TYPE_ACCESS_TOKEN,
    ClientAuthMethod,
    ConfiguredHeaderName,
    OutgoingAuthType,
    header_name_rule,
    remote_url_problem,
)

AUTH_MEMBERS: tuple[OutgoingAuthType, ...] = ("bearerToken", "headerInjection", "tokenExchange")
"""The types that carry a sub-object of the same name (`unauthenticated` carries none)."""
SCOPES_MAX_ITEMS = 64


class MCPExternalAuthConfigConditionType(StrEnum):
    """Condition types an MCPExternalAuthConfig's status carries."""

    VALID = "Valid"


class BearerTokenAuth(ApiModel):
    """Send `Authorization: Bearer <token>` with the token from a Secret."""

    secret_ref: SecretKeySelector = Field(..., description="The Secret key holding the token.")


class HeaderInjectionAuth(ApiModel):
    """Send one header whose value comes from a Secret (e.g. an API key)."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(header_name_rule("headerName"))
    }

    header_name: ConfiguredHeaderName = Field(
        ..., description="The header to send, e.g. `X-API-Key`."
    )
    value_secret_ref: SecretKeySelector = Field(
        ..., description="The Secret key holding the header's value."
    )


class TokenExchangeAuth(ApiModel):
    """OAuth 2.0 Token Exchange (RFC 8693): the caller's token is exchanged for the upstream's."""

    token_url: str = Field(
        ...,
        max_length=HTTP_URL_MAX_LENGTH,
        pattern=HTTP_URL_PATTERN,
        description="The authorization server's token endpoint (http or https).",
    )
    client_id: str = Field(
        ..., min_length=1, max_length=1024, description="The proxy's client id there."
    )
    client_secret_ref: SecretKeySelector | None = Field(
        None, description="The Secret key holding the client secret; unset: a public client."
    )
    client_auth_method: ClientAuthMethod = Field(
        "client_secret_basic",
        description="How the client secret is sent: `client_secret_basic` or `client_secret_post`.",
    )
    audience: str | None = Field(
        None, min_length=1, max_length=1024, description="`audience` of the token asked for."
    )
    scopes: list[str] = Field(
        default_factory=list,
        max_length=SCOPES_MAX_ITEMS,
        json_schema_extra=LIST_SET,
        description="`scope` of the token asked for.",
    )
    subject_token_type: str = Field(
        TOKEN_TYPE_ACCESS_TOKEN,
        min_length=1,
        max_length=256,
        pattern=r"^urn:ietf:params:oauth:token-type:[a-z_]+$",
        description="`subject_token_type` sent (an RFC 8693 token-type URN).",
    )

    @field_validator("token_url")
    @classmethod
    def _check_token_url(cls, value: str) -> str:
        # A token endpoint is configured by the platform, so it may be internal.
        if problem := remote_url_problem(value, allow_private=True):
            raise ValueError(problem)
        return value

    @field_validator("scopes")
    @classmethod
    def _unique_scopes(cls, value: list[str]) -> list[str]:
        if duplicates := find_duplicates(value):
            raise ValueError(f"scopes must be unique: {', '.join(duplicates)}")
        return value


class MCPExternalAuthConfigSpec(ApiModel):
    """Outgoing authentication; exactly the sub-object named by `type` is set."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(*(set_exactly_for_type(m) for m in AUTH_MEMBERS))
    }

    type: OutgoingAuthType = Field(
        ...,
        description=(
            "`bearerToken`, `headerInjection`, `tokenExchange` or `unauthenticated` (nothing "
            "is added)."
        ),
    )
    bearer_token: BearerTokenAuth | None = Field(None, description="Settings for `bearerToken`.")
    header_injection: HeaderInjectionAuth | None = Field(
        None, description="Settings for `headerInjection`."
    )
    token_exchange: TokenExchangeAuth | None = Field(
        None, description="Settings for `tokenExchange`."
    )

    @model_validator(mode="after")
    def _check_type(self) -> Self:
        check_member_for_type(self.type, member="bearerToken", value=self.bearer_token)
        check_member_for_type(self.type, member="headerInjection", value=self.header_injection)
        check_member_for_type(self.type, member="tokenExchange", value=self.token_exchange)
        return self


class AuthConfigReferrer(ApiModel):
    """An object whose proxy uses this config."""

    kind: Literal["MCPServer", "MCPRemoteProxy"] = Field(
        ..., description=f"`{KIND_MCPSERVER}` or `{KIND_MCPREMOTEPROXY}`."
    )
    name: str = Field(..., description="Its name, in the config's namespace.")


class MCPExternalAuthConfigStatus(ApiModel):
    """Observed state of an MCPExternalAuthConfig, written by the operator."""

    observed_generation: int | None = Field(
        None, ge=0, description="The `.metadata.generation` this status describes."
    )
    conditions: list[Condition] = Field(
        default_factory=list, json_schema_extra=CONDITIONS_FIELD_EXTRA, description="`Valid`."
    )
    referenced_by: list[AuthConfigReferrer] = Field(
        default_factory=list,
        json_schema_extra=list_map("kind", "name"),
        description="MCPServers and MCPRemoteProxies using this config, sorted by kind and name.",
    )


class MCPExternalAuthConfig(ApiModel):
    """How a proxy authenticates itself to the MCP server it forwards to."""

    api_version: Literal["moorage.dev/v1alpha1"] = Field(
        "moorage.dev/v1alpha1", description="`moorage.dev/v1alpha1`."
    )
    kind: Literal["MCPExternalAuthConfig"] = Field(
        KIND_MCPEXTERNALAUTHCONFIG, description="`MCPExternalAuthConfig`."
    )
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard metadata.")
    spec: MCPExternalAuthConfigSpec = Field(..., description="Desired state.")
    status: MCPExternalAuthConfigStatus = Field(
        default_factory=MCPExternalAuthConfigStatus, description="Observed state."
    )


def parse_mcpexternalauthconfig(obj: dict[str, Any]) -> MCPExternalAuthConfig:
    """Validate a raw MCPExternalAuthConfig; raises `pydantic.ValidationError`."""
    return MCPExternalAuthConfig.model_validate(obj)
