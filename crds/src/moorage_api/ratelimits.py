"""Rate limits of a proxy (`spec.rateLimits`): token buckets per subject and per tool.

Pure: models and the rules the schema can state. Shared by every kind that runs a proxy
(MCPServer, MCPRemoteProxy, VirtualMCPServer; each declares it with `rate_limits_field`). A bucket holds up to `burst`
requests and refills at `requestsPerMinute`; a request takes one. `perSubject` limits every
request of one authenticated subject (unauthenticated callers share one bucket); `perTool`
limits `tools/call` of one tool (its name as clients see it, after renaming), for each subject
or for all of them together. Counted in the proxy's memory, or in Redis when
`spec.sessionStorage.type` is `redis` (then shared by the replicas).
"""

from __future__ import annotations

from typing import Any, Final, Literal, Self

from pydantic import Field, field_validator, model_validator

from moorage_api.base import ApiModel, cel, find_duplicates, list_map, validations

MAX_REQUESTS_PER_MINUTE: Final = 1_000_000
MAX_BURST: Final = 100_000
MAX_TOOL_LIMITS: Final = 128
TOOL_NAME_MAX_LENGTH: Final = 128

WhenUnavailable = Literal["allow", "deny"]
"""What the proxy does with a request while the store of its buckets (Redis) cannot be reached."""


class RateLimit(ApiModel):
    """One token bucket: `burst` requests at once, refilled at `requestsPerMinute`."""

    requests_per_minute: int = Field(
        ...,
        ge=1,
        le=MAX_REQUESTS_PER_MINUTE,
        description=f"Sustained rate, 1-{MAX_REQUESTS_PER_MINUTE}.",
    )
    burst: int = Field(
        ..., ge=1, le=MAX_BURST, description=f"Requests allowed at once, 1-{MAX_BURST}."
    )


class ToolRateLimit(RateLimit):
    """A limit on `tools/call` of one tool."""

    tool: str = Field(
        ...,
        min_length=1,
        max_length=TOOL_NAME_MAX_LENGTH,
        description="The tool's name as clients see it (after renaming).",
    )
    per_subject: bool = Field(
        True,
        description="`true`: each subject has its own bucket for the tool; `false`: one for all.",
    )


class RateLimits(ApiModel):
    """Token-bucket rate limits; over a limit, a request is answered with a JSON-RPC error
    (-32000, HTTP 429) carrying `data.retryAfterMs`."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.perSubject) || (has(self.perTool) && size(self.perTool) > 0)",
                message="rateLimits needs perSubject or at least one perTool limit",
            )
        )
    }

    per_subject: RateLimit | None = Field(
        None, description="For every request of one subject (all unauthenticated callers: one)."
    )
    per_tool: list[ToolRateLimit] = Field(
        default_factory=list,
        max_length=MAX_TOOL_LIMITS,
        json_schema_extra=list_map("tool"),
        description="For `tools/call` of one tool each; tool names unique.",
    )
    when_unavailable: WhenUnavailable = Field(
        "allow",
        description=(
            "While Redis cannot be reached: `allow` lets requests through unlimited (counted in "
            "`moorage_proxy_rate_limit_store_errors_total` and logged), `deny` refuses them "
            "(HTTP 503)."
        ),
    )

    @field_validator("per_tool")
    @classmethod
    def _unique_tools(cls, value: list[ToolRateLimit]) -> list[ToolRateLimit]:
        if duplicates := find_duplicates([limit.tool for limit in value]):
            raise ValueError(f"each tool is limited once: {', '.join(duplicates)} listed again")
        return value

    @model_validator(mode="after")
    def _something_limited(self) -> Self:
        if self.per_subject is None and not self.per_tool:
            raise ValueError("needs perSubject or at least one perTool limit")
        return self


def rate_limits_field() -> Any:
    """The `rateLimits` field of every kind that runs a proxy (one description for all)."""
    return Field(
        None, description="Token-bucket rate limits per subject and per tool; unset: none."
    )
