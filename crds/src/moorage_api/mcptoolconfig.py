"""The MCPToolConfig kind (spec §2.2): which tools an MCPServer's proxy exposes, and under what name.

Pure: models and schema rules. The webhook checks that renames do not collide; the operator hashes
the spec into `status.configHash`, protects referenced configs with a finalizer and pushes changes
to every referring MCPServer's RunConfig.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from moorage_api.base import (
    CONDITIONS_FIELD_EXTRA,
    LIST_SET,
    ApiModel,
    Condition,
    ObjectMeta,
    cel,
    find_duplicates,
    validations,
)
from moorage_api.constants import KIND_MCPTOOLCONFIG


class MCPToolConfigConditionType(StrEnum):
    """Condition types an MCPToolConfig's status carries."""

    VALID = "Valid"
    DELETION_BLOCKED = "DeletionBlocked"


class ToolOverride(ApiModel):
    """A new name and/or description for one tool; at least one is set."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.name) || has(self.description)",
                message="a tool override sets name, description or both",
            )
        )
    }

    name: str | None = Field(
        None, min_length=1, max_length=128, description="Name clients see instead."
    )
    description: str | None = Field(None, description="Description clients see instead.")

    @model_validator(mode="after")
    def _check_not_empty(self) -> Self:
        if self.name is None and self.description is None:
            raise ValueError("a tool override sets name, description or both")
        return self


class MCPToolConfigSpec(ApiModel):
    """Tool filtering and renaming for the MCPServers that reference this config."""

    tools_filter: list[str] = Field(
        default_factory=list,
        max_length=1024,
        json_schema_extra=LIST_SET,
        description=(
            "Tool names to expose, as clients see them (after renaming); empty exposes all."
        ),
    )
    tools_override: dict[str, ToolOverride] = Field(
        default_factory=dict,
        description="Per tool, keyed by the server's tool name: a new name and/or description.",
    )

    @field_validator("tools_filter")
    @classmethod
    def _unique_filter(cls, value: list[str]) -> list[str]:
        duplicates = find_duplicates(value)
        if duplicates:
            raise ValueError(f"tool names must be unique: {', '.join(duplicates)}")
        return value


class MCPToolConfigStatus(ApiModel):
    """Observed state of an MCPToolConfig, written by the operator."""

    observed_generation: int | None = Field(
        None, ge=0, description="The `.metadata.generation` this status describes."
    )
    config_hash: str | None = Field(
        None, description="Hash of the spec; MCPServers record the hash they run with."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra=CONDITIONS_FIELD_EXTRA,
        description="`Valid`, `DeletionBlocked` (its message lists the referring MCPServers).",
    )


class MCPToolConfig(ApiModel):
    """Which tools MCPServers expose and how they are named and described."""

    api_version: Literal["moorage.dev/v1alpha1"] = Field(
        "moorage.dev/v1alpha1", description="`moorage.dev/v1alpha1`."
    )
    kind: Literal["MCPToolConfig"] = Field(KIND_MCPTOOLCONFIG, description="`MCPToolConfig`.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard metadata.")
    spec: MCPToolConfigSpec = Field(..., description="Desired state.")
    status: MCPToolConfigStatus = Field(
        default_factory=MCPToolConfigStatus, description="Observed state."
    )


def parse_mcptoolconfig(obj: dict[str, Any]) -> MCPToolConfig:
    """Validate a raw MCPToolConfig; raises `pydantic.ValidationError`."""
    return MCPToolConfig.model_validate(obj)
