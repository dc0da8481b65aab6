"""The MCPGroup kind: a named set of MCPServers and MCPRemoteProxies.

Pure: models. Members join through their own `spec.groupRef`; the operator lists them in the
group's status and keeps the group (finalizer `moorage.dev/group-members`) while any remains.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from moorage_api.base import (
    CONDITIONS_FIELD_EXTRA,
    ApiModel,
    Condition,
    ObjectMeta,
    list_map,
)
from moorage_api.constants import KIND_MCPGROUP, KIND_MCPREMOTEPROXY, KIND_MCPSERVER
from moorage_api.mcpserver import MCPServerPhase

MemberKind = Literal["MCPServer", "MCPRemoteProxy"]


class MCPGroupPhase(StrEnum):
    """Coarse state of an MCPGroup (`status.phase`)."""

    READY = "Ready"
    TERMINATING = "Terminating"


class MCPGroupConditionType(StrEnum):
    """Condition types an MCPGroup's status carries."""

    READY = "Ready"
    DELETION_BLOCKED = "DeletionBlocked"


class MCPGroupSpec(ApiModel):
    """Desired state of an MCPGroup."""

    description: str | None = Field(
        None, max_length=1024, description="What the group's members are for."
    )


class GroupMember(ApiModel):
    """One member of a group, as the operator last saw it."""

    kind: MemberKind = Field(..., description=f"`{KIND_MCPSERVER}` or `{KIND_MCPREMOTEPROXY}`.")
    name: str = Field(..., description="The member's name, in the group's namespace.")
    phase: MCPServerPhase | None = Field(None, description="The member's `status.phase`.")


class MCPGroupStatus(ApiModel):
    """Observed state of an MCPGroup, written by the operator."""

    phase: MCPGroupPhase | None = Field(None, description="`Ready` or `Terminating`.")
    members: list[GroupMember] = Field(
        default_factory=list,
        json_schema_extra=list_map("kind", "name"),
        description="MCPServers and MCPRemoteProxies whose `spec.groupRef` names this group, "
        "sorted by kind, then name.",
    )
    server_count: int | None = Field(None, ge=0, description="Members that are MCPServers.")
    remote_proxy_count: int | None = Field(
        None, ge=0, description="Members that are MCPRemoteProxies."
    )
    member_count: int | None = Field(None, ge=0, description="All members.")
    observed_generation: int | None = Field(
        None, ge=0, description="The `.metadata.generation` this status describes."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra=CONDITIONS_FIELD_EXTRA,
        description="`Ready`, `DeletionBlocked` (while deleted with members; names them).",
    )


class MCPGroup(ApiModel):
    """A named set of MCPServers and MCPRemoteProxies."""

    api_version: Literal["moorage.dev/v1alpha1"] = Field(
        "moorage.dev/v1alpha1", description="`moorage.dev/v1alpha1`."
    )
    kind: Literal["MCPGroup"] = Field(KIND_MCPGROUP, description="`MCPGroup`.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard metadata.")
    spec: MCPGroupSpec = Field(default_factory=MCPGroupSpec, description="Desired state.")
    status: MCPGroupStatus = Field(default_factory=MCPGroupStatus, description="Observed state.")


def parse_mcpgroup(obj: dict[str, Any]) -> MCPGroup:
    """Validate a raw MCPGroup; raises `pydantic.ValidationError`."""
    return MCPGroup.model_validate(obj)
