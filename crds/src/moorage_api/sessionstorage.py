"""Where a proxy keeps what its replicas share (`spec.sessionStorage`): in memory, or in Redis.

Pure: models and the rules the schema can state. Shared by every kind that runs a proxy
(MCPServer, MCPRemoteProxy, VirtualMCPServer: each declares `sessionStorage` with
`session_storage_field` and carries `replicas_need_redis_rule`). `type: memory` is the default
and keeps everything in the proxy process, so it serves one replica. `type: redis` names a Redis
server (or a Sentinel group) that holds the sessions and the rate-limit counts, so that any
replica serves any request of a session and the limits hold across replicas; `replicas > 1`
requires it. The password is only ever a Secret reference; the operator hands it to the proxy
container as an environment variable.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, Self

from pydantic import Field, StringConstraints, field_validator, model_validator

from moorage_api.base import (
    LIST_SET,
    ApiModel,
    ConfigMapKey,
    ObjectName,
    SecretKeySelector,
    cel,
    check_member_for_type,
    find_duplicates,
    set_exactly_for_type,
    validations,
)

SessionStorageType = Literal["memory", "redis"]

PORT_PATTERN: Final = (
    r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
)
"""A TCP port, 1-65535."""
REDIS_ADDRESS_PATTERN: Final = (
    rf"^([A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):{PORT_PATTERN}$"
)
"""`host:port`: a DNS name or IPv4 address, or an IPv6 address in brackets, then a port."""
REDIS_ADDRESS_MAX_LENGTH: Final = 261
KEY_PREFIX_PATTERN: Final = r"^[A-Za-z0-9._:{}-]+$"
"""Characters a key prefix may hold: letters, digits, `.`, `_`, `:`, `-` and hash-tag braces."""
KEY_PREFIX_MAX_LENGTH: Final = 128
SENTINEL_MASTER_PATTERN: Final = r"^[A-Za-z0-9._-]+$"
SENTINEL_ADDRESSES_MAX_ITEMS: Final = 16
REDIS_DB_MAX: Final = 1023

RedisAddress = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=REDIS_ADDRESS_MAX_LENGTH, pattern=REDIS_ADDRESS_PATTERN
    ),
]
"""A Redis server's `host:port`."""
KeyPrefix = Annotated[
    str,
    StringConstraints(min_length=1, max_length=KEY_PREFIX_MAX_LENGTH, pattern=KEY_PREFIX_PATTERN),
]
"""The start of every key a proxy writes to Redis."""


def default_key_prefix(namespace: str, name: str) -> str:
    """`moorage:<namespace>:<name>:`: two proxies sharing a Redis never share a key."""
    return f"moorage:{namespace}:{name}:"


class ConfigMapKeySelector(ApiModel):
    """A key of a ConfigMap in the same namespace."""

    name: ObjectName = Field(..., description="Name of the ConfigMap.")
    key: ConfigMapKey = Field(..., description="Key in the ConfigMap's data.")


class RedisTLS(ApiModel):
    """TLS to Redis."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.enabled || (!has(self.caConfigMapRef) && "
                "(!has(self.insecureSkipVerify) || !self.insecureSkipVerify))",
                message="caConfigMapRef and insecureSkipVerify are only used when enabled is true",
            ),
            cel(
                "!has(self.caConfigMapRef) || !has(self.insecureSkipVerify) || "
                "!self.insecureSkipVerify",
                message="caConfigMapRef and insecureSkipVerify cannot be used together",
            ),
        )
    }

    enabled: bool = Field(False, description="Connect with TLS.")
    ca_config_map_ref: ConfigMapKeySelector | None = Field(
        None,
        description="A ConfigMap key holding the PEM CA bundle to trust; unset: the system CAs.",
    )
    insecure_skip_verify: bool = Field(
        False, description="Do not verify the server's certificate (testing only)."
    )

    @model_validator(mode="after")
    def _check_members(self) -> Self:
        if not self.enabled and (self.ca_config_map_ref is not None or self.insecure_skip_verify):
            raise ValueError(
                "caConfigMapRef and insecureSkipVerify are only used when enabled is true"
            )
        if self.ca_config_map_ref is not None and self.insecure_skip_verify:
            raise ValueError("caConfigMapRef and insecureSkipVerify cannot be used together")
        return self


class RedisSentinel(ApiModel):
    """Find the Redis primary through Sentinel."""

    master_name: str = Field(
        ...,
        min_length=1,
        max_length=253,
        pattern=SENTINEL_MASTER_PATTERN,
        description="The monitored primary's name.",
    )
    addresses: list[RedisAddress] = Field(
        ...,
        min_length=1,
        max_length=SENTINEL_ADDRESSES_MAX_ITEMS,
        json_schema_extra=LIST_SET,
        description="Sentinels' `host:port`; each listed once.",
    )

    @field_validator("addresses")
    @classmethod
    def _unique_addresses(cls, value: list[str]) -> list[str]:
        if duplicates := find_duplicates(value):
            raise ValueError(f"sentinel addresses must be listed once: {', '.join(duplicates)}")
        return value


class RedisStorage(ApiModel):
    """A Redis server the proxy's replicas share."""

    address: RedisAddress = Field(
        ...,
        description=(
            "`host:port` of the Redis server; with `sentinel`, only a fallback for logs (the "
            "primary is asked of the sentinels)."
        ),
    )
    password_secret_ref: SecretKeySelector | None = Field(
        None, description="A Secret key holding the password (`AUTH`); unset: no password."
    )
    tls: RedisTLS | None = Field(None, description="TLS; unset: plain TCP.")
    key_prefix: KeyPrefix | None = Field(
        None,
        description=(
            "Start of every key the proxy writes (letters, digits, `.`, `_`, `:`, `-`, `{`, `}`); "
            "unset: `moorage:<namespace>:<name>:`."
        ),
    )
    db: int = Field(0, ge=0, le=REDIS_DB_MAX, description="Database number.")
    sentinel: RedisSentinel | None = Field(None, description="Sentinel discovery; optional.")


class SessionStorage(ApiModel):
    """Where the proxy keeps what its replicas share."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(set_exactly_for_type("redis"))
    }

    type: SessionStorageType = Field(
        "memory",
        description=(
            "`memory`: in each proxy process (one replica; rate limits count per replica); "
            "`redis`: in Redis, shared by the replicas."
        ),
    )
    redis: RedisStorage | None = Field(None, description="The Redis server for `redis`.")

    @model_validator(mode="after")
    def _check_type(self) -> Self:
        check_member_for_type(self.type, member="redis", value=self.redis)
        return self


REPLICAS_NEED_REDIS: Final = (
    "a session's requests may land on any replica; with memory storage a replica does not know "
    "the sessions the others opened: set sessionStorage.type to redis, or replicas to 1"
)
"""Why `replicas > 1` needs `sessionStorage.type: redis` (the CRD rule's and the webhook's
message)."""


def replicas_need_redis_rule() -> dict[str, str]:
    """CEL on a spec with `replicas` and `sessionStorage`: more than one replica shares its
    sessions through Redis. `sessionStorage` defaults to `{type: memory}`, so it is always there;
    unset `replicas` (an autoscaler's) is left to the webhook, which warns."""
    return cel(
        "!has(self.replicas) || self.replicas <= 1 || self.sessionStorage.type == 'redis'",
        message=REPLICAS_NEED_REDIS,
        field_path=".replicas",
    )


def is_memory_with_replicas(storage: SessionStorage, *, replicas: int | None) -> bool:
    """`replicas > 1` with sessions kept in each replica's memory (what the rule refuses)."""
    return replicas is not None and replicas > 1 and storage.type != "redis"


def session_storage_field() -> Any:
    """The `sessionStorage` field of every kind that runs a proxy (one description for all)."""
    return Field(
        SessionStorage(),
        description=(
            "Where the proxy keeps what its replicas share (sessions and rate-limit counts): "
            "`memory` (default; one replica) or `redis` (required for `replicas` above 1)."
        ),
    )
