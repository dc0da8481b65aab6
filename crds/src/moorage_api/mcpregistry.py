"""The MCPRegistry kind (spec §2.3): a catalogue of MCP servers synced from a source.

Pure: models and schema rules. The operator syncs the source into ConfigMap
`<name>-registry-storage` and, with `apiService.enabled`, runs the registry API in front of it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final, Literal, Self

from pydantic import Field, field_validator, model_validator

from moorage_api.base import (
    CONDITIONS_FIELD_EXTRA,
    ApiModel,
    Condition,
    ConfigMapKey,
    ObjectMeta,
    ObjectName,
    SecretKeySelector,
    Timestamp,
    cel,
    check_member_for_type,
    check_object_name,
    object_name_rules,
    set_exactly_for_type,
    validations,
)
from moorage_api.constants import KIND_MCPREGISTRY
from moorage_api.durations import DURATION_PATTERN, parse_go_duration

GIT_REPOSITORY_PATTERN: Final = r"^(https://|ssh://|git@|file://)[^\s]+$"
GIT_COMMIT_PATTERN: Final = r"^[0-9a-fA-F]{7,64}$"
GIT_REF_NAME_PATTERN: Final = r"^[^\s~^:?*\[\\]+$"
RELATIVE_PATH_PATTERN: Final = r"^[^/\s][^\s]*$"
MIN_SYNC_INTERVAL_SECONDS: Final = 60.0
MCPREGISTRY_NAME_MAX_LENGTH: Final = 59
"""Longest MCPRegistry name whose API Service `<name>-api` is a valid DNS-1035 label."""
MCPREGISTRY_NAME_PATTERN: Final = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"

RegistrySourceType = Literal["configMap", "git"]
RegistryFormat = Literal["toolhive", "upstream"]


class MCPRegistryPhase(StrEnum):
    """Coarse state of an MCPRegistry (`status.phase`)."""

    PENDING = "Pending"
    SYNCING = "Syncing"
    READY = "Ready"
    FAILED = "Failed"


class MCPRegistryConditionType(StrEnum):
    """Condition types an MCPRegistry's status carries."""

    SYNCED = "Synced"
    API_READY = "APIReady"
    READY = "Ready"


class ConfigMapSource(ApiModel):
    """Registry data in a ConfigMap of the same namespace (watched for changes)."""

    name: ObjectName = Field(..., description="Name of the ConfigMap.")
    key: ConfigMapKey = Field("registry.json", description="Key holding the registry JSON.")


class GitAuth(ApiModel):
    """Credentials for a private git repository."""

    username: str = Field(..., min_length=1, description="User name for the repository.")
    password_secret_ref: SecretKeySelector = Field(
        ..., description="Secret key holding the password or token."
    )


class GitSource(ApiModel):
    """Registry data in a git repository."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "(has(self.branch) ? 1 : 0) + (has(self.tag) ? 1 : 0) + (has(self.commit) ? 1 : 0) <= 1",
                message="at most one of branch, tag and commit may be set",
            )
        )
    }

    repository: str = Field(
        ...,
        max_length=2048,
        pattern=GIT_REPOSITORY_PATTERN,
        description=(
            "Repository URL: `https://`, `ssh://` or `git@host:path`. `file://` and hosts on the "
            "operator's own pod, link-local or metadata addresses are refused unless the "
            "platform admin sets REGISTRY_ALLOW_LOCAL_SOURCES."
        ),
    )
    branch: str | None = Field(
        None,
        max_length=255,
        pattern=GIT_REF_NAME_PATTERN,
        description="Branch to follow; the default branch when no ref is set.",
    )
    tag: str | None = Field(
        None, max_length=255, pattern=GIT_REF_NAME_PATTERN, description="Tag to check out."
    )
    commit: str | None = Field(
        None, pattern=GIT_COMMIT_PATTERN, description="Commit hash to check out."
    )
    path: str = Field(
        "registry.json",
        max_length=4096,
        pattern=RELATIVE_PATH_PATTERN,
        description="Path of the registry JSON inside the repository.",
    )
    auth: GitAuth | None = Field(None, description="Credentials; unset for public repositories.")

    @model_validator(mode="after")
    def _one_ref(self) -> Self:
        refs = [name for name in ("branch", "tag", "commit") if getattr(self, name) is not None]
        if len(refs) > 1:
            raise ValueError(
                f"at most one of branch, tag and commit may be set (got {', '.join(refs)})"
            )
        return self


class RegistrySource(ApiModel):
    """Where the registry data comes from."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            set_exactly_for_type("configMap"),
            set_exactly_for_type("git"),
        )
    }

    type: RegistrySourceType = Field(..., description="`configMap` or `git`.")
    config_map: ConfigMapSource | None = Field(None, description="The source for `configMap`.")
    git: GitSource | None = Field(None, description="The source for `git`.")
    format: RegistryFormat = Field(
        "toolhive",
        description=(
            "`toolhive` (ToolHive registry JSON) or `upstream` (a list of the official MCP "
            "registry's `server.json` documents)."
        ),
    )

    @model_validator(mode="after")
    def _check_type(self) -> Self:
        check_member_for_type(self.type, member="configMap", value=self.config_map)
        check_member_for_type(self.type, member="git", value=self.git)
        return self


class SyncPolicy(ApiModel):
    """When the operator syncs the source."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "duration(self.interval) >= duration('1m')",
                message="interval must be at least 1m",
                field_path=".interval",
            )
        )
    }

    automatic: bool = Field(True, description="Sync periodically; otherwise only on request.")
    interval: str = Field(
        "1h",
        max_length=64,
        pattern=DURATION_PATTERN,
        description="Time between automatic syncs (Go duration, at least `1m`).",
    )

    @field_validator("interval")
    @classmethod
    def _at_least_a_minute(cls, value: str) -> str:
        if parse_go_duration(value) < MIN_SYNC_INTERVAL_SECONDS:
            raise ValueError(f"interval must be at least 1m (got {value})")
        return value

    @property
    def interval_seconds(self) -> float:
        return parse_go_duration(self.interval)


class GlobFilter(ApiModel):
    """Glob patterns (`*`, `?`, `[...]`); a value passes when it matches an include (or there are
    none) and no exclude."""

    include: list[str] = Field(default_factory=list, description="Patterns to keep.")
    exclude: list[str] = Field(default_factory=list, description="Patterns to drop.")


class RegistryFilter(ApiModel):
    """Which servers of the source the registry keeps."""

    names: GlobFilter | None = Field(None, description="Filter on server names.")
    tags: GlobFilter | None = Field(None, description="Filter on server tags.")


class APIService(ApiModel):
    """The HTTP API serving the registry's data."""

    enabled: bool = Field(False, description="Run Deployment and Service `<name>-api` (port 8080).")


class MCPRegistrySpec(ApiModel):
    """Desired state of an MCPRegistry."""

    source: RegistrySource = Field(..., description="Where the registry data comes from.")
    sync_policy: SyncPolicy = Field(SyncPolicy(), description="When to sync.")
    filter: RegistryFilter | None = Field(None, description="Which servers to keep.")
    api_service: APIService = Field(APIService(), description="The registry API.")


class SyncStatus(ApiModel):
    """Outcome of the latest syncs."""

    last_sync_time: Timestamp | None = Field(None, description="When data last synced.")
    last_sync_hash: str | None = Field(None, description="Hash of the data last stored.")
    server_count: int | None = Field(None, ge=0, description="Servers in the stored data.")
    last_attempt: Timestamp | None = Field(None, description="When a sync was last tried.")
    attempt_count: int | None = Field(
        None, ge=0, description="Failed attempts since the last success."
    )
    message: str | None = Field(None, description="A sentence about the latest attempt.")


class APIStatus(ApiModel):
    """State of the registry API."""

    endpoint: str | None = Field(None, description="URL of the API inside the cluster.")
    ready: bool = Field(False, description="The API has ready replicas.")


class MCPRegistryStatus(ApiModel):
    """Observed state of an MCPRegistry, written by the operator."""

    phase: MCPRegistryPhase | None = Field(
        None, description="`Pending`, `Syncing`, `Ready` or `Failed`."
    )
    sync_status: SyncStatus | None = Field(None, description="Outcome of the latest syncs.")
    api_status: APIStatus | None = Field(None, description="State of the registry API.")
    observed_generation: int | None = Field(
        None, ge=0, description="The `.metadata.generation` this status describes."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra=CONDITIONS_FIELD_EXTRA,
        description="Standard conditions.",
    )


class MCPRegistry(ApiModel):
    """A catalogue of MCP servers, synced from a source and served over HTTP."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": object_name_rules(
            max_length=MCPREGISTRY_NAME_MAX_LENGTH,
            pattern=MCPREGISTRY_NAME_PATTERN,
            why="its API Service is named <name>-api",
        )
    }

    api_version: Literal["moorage.dev/v1alpha1"] = Field(
        "moorage.dev/v1alpha1", description="`moorage.dev/v1alpha1`."
    )
    kind: Literal["MCPRegistry"] = Field(KIND_MCPREGISTRY, description="`MCPRegistry`.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard metadata.")
    spec: MCPRegistrySpec = Field(..., description="Desired state.")
    status: MCPRegistryStatus = Field(
        default_factory=MCPRegistryStatus, description="Observed state."
    )

    @model_validator(mode="after")
    def _check_name(self) -> Self:
        check_object_name(
            self.metadata.name,
            max_length=MCPREGISTRY_NAME_MAX_LENGTH,
            pattern=MCPREGISTRY_NAME_PATTERN,
        )
        return self


def parse_mcpregistry(obj: dict[str, Any]) -> MCPRegistry:
    """Validate a raw MCPRegistry; raises `pydantic.ValidationError`."""
    return MCPRegistry.model_validate(obj)
