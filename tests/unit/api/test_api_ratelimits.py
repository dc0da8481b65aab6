"""`spec.sessionStorage` and `spec.rateLimits`: what the models accept, what they refuse (naming
the field), and the RunConfig they become (password as an env reference, key prefix defaulted)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from moorage_api.base import validation_messages
from moorage_api.mcpserver import MCPServerSpec
from moorage_api.ratelimits import RateLimits
from moorage_api.runconfig import (
    LIVE_FIELDS,
    REDIS_PASSWORD_ENV,
    RunConfig,
    RunConfigError,
    load_runconfig,
    render_runconfig_json,
    restart_checksum,
    runconfig_rate_limits,
    runconfig_session_storage,
)
from moorage_api.sessionstorage import SessionStorage

REDIS: dict[str, Any] = {"type": "redis", "redis": {"address": "redis.cache:6379"}}
LIMITS: dict[str, Any] = {
    "perSubject": {"requestsPerMinute": 120, "burst": 10},
    "perTool": [
        {"tool": "get_time", "requestsPerMinute": 6, "burst": 2},
        {"tool": "convert_time", "requestsPerMinute": 60, "burst": 5, "perSubject": False},
    ],
}


def spec_messages(**fields: Any) -> list[str]:
    with pytest.raises(ValidationError) as info:
        MCPServerSpec.model_validate({"image": "ghcr.io/a/b:1", **fields})
    return validation_messages(info.value, prefix="spec")


def test_memory_is_the_default_and_no_limits_are_set() -> None:
    spec = MCPServerSpec(image="ghcr.io/a/b:1")
    assert spec.session_storage == SessionStorage()
    assert spec.session_storage.type == "memory"
    assert spec.rate_limits is None


@pytest.mark.parametrize(
    "storage",
    [
        REDIS,
        {"type": "redis", "redis": {"address": "[fd00::1]:6380", "db": 3, "keyPrefix": "a:{b}:"}},
        {
            "type": "redis",
            "redis": {
                "address": "10.0.0.1:6379",
                "passwordSecretRef": {"name": "redis", "key": "password"},
                "tls": {"enabled": True, "caConfigMapRef": {"name": "ca", "key": "ca.crt"}},
                "sentinel": {"masterName": "mymaster", "addresses": ["s1:26379", "s2:26379"]},
            },
        },
    ],
    ids=["address", "ipv6-db-prefix", "everything"],
)
def test_good_storage_is_accepted(storage: dict[str, Any]) -> None:
    spec = MCPServerSpec.model_validate({"image": "ghcr.io/a/b:1", "sessionStorage": storage})
    assert spec.session_storage.type == "redis"


@pytest.mark.parametrize(
    ("storage", "expected"),
    [
        ({"type": "redis"}, "spec.sessionStorage: redis: required when type is redis"),
        (
            {"type": "memory", "redis": REDIS["redis"]},
            "spec.sessionStorage: redis: not allowed when type is memory",
        ),
        ({"type": "disk"}, "spec.sessionStorage.type: Input should be 'memory' or 'redis'"),
        ({"type": "redis", "redis": {"address": "redis"}}, "spec.sessionStorage.redis.address"),
        ({"type": "redis", "redis": {"address": "redis:0"}}, "spec.sessionStorage.redis.address"),
        (
            {"type": "redis", "redis": {"address": "redis:65536"}},
            "spec.sessionStorage.redis.address",
        ),
        (
            {"type": "redis", "redis": {"address": "r:1", "keyPrefix": "a b"}},
            "spec.sessionStorage.redis.keyPrefix",
        ),
        (
            {"type": "redis", "redis": {"address": "r:1", "keyPrefix": "a" * 129}},
            "spec.sessionStorage.redis.keyPrefix",
        ),
        ({"type": "redis", "redis": {"address": "r:1", "db": -1}}, "spec.sessionStorage.redis.db"),
        (
            {"type": "redis", "redis": {"address": "r:1", "tls": {"insecureSkipVerify": True}}},
            "spec.sessionStorage.redis.tls: caConfigMapRef and insecureSkipVerify are only used",
        ),
        (
            {
                "type": "redis",
                "redis": {
                    "address": "r:1",
                    "tls": {
                        "enabled": True,
                        "insecureSkipVerify": True,
                        "caConfigMapRef": {"name": "ca", "key": "ca.crt"},
                    },
                },
            },
            "cannot be used together",
        ),
        (
            {
                "type": "redis",
                "redis": {"address": "r:1", "sentinel": {"masterName": "m", "addresses": []}},
            },
            "spec.sessionStorage.redis.sentinel.addresses",
        ),
        (
            {
                "type": "redis",
                "redis": {
                    "address": "r:1",
                    "sentinel": {"masterName": "m", "addresses": ["s:1", "s:1"]},
                },
            },
            "sentinel addresses must be listed once: s:1",
        ),
        (
            {"type": "redis", "redis": {"address": "r:1", "password": "hunter2"}},
            "spec.sessionStorage.redis.password: unknown field",
        ),
    ],
    ids=[
        "redis-missing",
        "redis-with-memory",
        "unknown-type",
        "no-port",
        "port-zero",
        "port-too-big",
        "prefix-charset",
        "prefix-too-long",
        "negative-db",
        "tls-options-without-tls",
        "ca-and-insecure",
        "no-sentinels",
        "sentinel-twice",
        "inline-password",
    ],
)
def test_bad_storage_is_refused_naming_the_field(storage: dict[str, Any], expected: str) -> None:
    messages = spec_messages(sessionStorage=storage)
    assert any(expected in m for m in messages), messages


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ({}, "spec.rateLimits: needs perSubject or at least one perTool limit"),
        ({"perTool": []}, "spec.rateLimits: needs perSubject or at least one perTool limit"),
        (
            {"perSubject": {"requestsPerMinute": 0, "burst": 1}},
            "spec.rateLimits.perSubject.requestsPerMinute: Input should be greater than or equal to 1",
        ),
        (
            {"perSubject": {"requestsPerMinute": 1, "burst": 0}},
            "spec.rateLimits.perSubject.burst: Input should be greater than or equal to 1",
        ),
        (
            {"perSubject": {"requestsPerMinute": 1_000_001, "burst": 1}},
            "spec.rateLimits.perSubject.requestsPerMinute: Input should be less than or equal to",
        ),
        (
            {"perSubject": {"requestsPerMinute": 1, "burst": 100_001}},
            "spec.rateLimits.perSubject.burst: Input should be less than or equal to 100000",
        ),
        (
            {"perSubject": {"requestsPerMinute": 1}},
            "spec.rateLimits.perSubject.burst: required field is missing",
        ),
        (
            {"perTool": [{"tool": "", "requestsPerMinute": 1, "burst": 1}]},
            "spec.rateLimits.perTool[0].tool",
        ),
        (
            {
                "perTool": [
                    {"tool": "a", "requestsPerMinute": 1, "burst": 1},
                    {"tool": "a", "requestsPerMinute": 2, "burst": 2},
                ]
            },
            "spec.rateLimits.perTool: each tool is limited once: a listed again",
        ),
        (
            {"perSubject": {"requestsPerMinute": 1, "burst": 1}, "whenUnavailable": "maybe"},
            "spec.rateLimits.whenUnavailable",
        ),
    ],
    ids=[
        "empty",
        "no-tools",
        "zero-rate",
        "zero-burst",
        "rate-too-big",
        "burst-too-big",
        "burst-missing",
        "empty-tool",
        "tool-twice",
        "unknown-failure-mode",
    ],
)
def test_bad_limits_are_refused_naming_the_field(limits: dict[str, Any], expected: str) -> None:
    messages = spec_messages(rateLimits=limits)
    assert any(expected in m for m in messages), messages


def test_the_runconfig_carries_the_password_as_an_env_reference_only() -> None:
    storage = SessionStorage.model_validate(
        {
            "type": "redis",
            "redis": {
                "address": "redis:6379",
                "passwordSecretRef": {"name": "redis-auth", "key": "password"},
                "tls": {"enabled": True},
            },
        }
    )
    rendered = runconfig_session_storage(storage, namespace="team", name="time")
    assert rendered.redis is not None
    assert rendered.redis.key_prefix == "moorage:team:time:"
    assert rendered.redis.password is not None
    assert rendered.redis.password.env == REDIS_PASSWORD_ENV
    assert rendered.redis.password.secret_key_ref is not None
    assert rendered.redis.password.secret_key_ref.name == "redis-auth"
    assert rendered.redis.tls is not None
    assert rendered.redis.tls.enabled


def test_a_key_prefix_that_is_set_is_kept() -> None:
    storage = SessionStorage.model_validate(
        {"type": "redis", "redis": {"address": "r:1", "keyPrefix": "shared:"}}
    )
    rendered = runconfig_session_storage(storage, namespace="a", name="b")
    assert rendered.redis is not None
    assert rendered.redis.key_prefix == "shared:"


def test_memory_storage_renders_without_redis() -> None:
    rendered = runconfig_session_storage(SessionStorage(), namespace="a", name="b")
    assert rendered.type == "memory"
    assert rendered.redis is None


def test_the_runconfig_round_trips_with_storage_and_limits() -> None:
    storage = SessionStorage.model_validate(
        {
            "type": "redis",
            "redis": {
                "address": "r:1",
                "passwordSecretRef": {"name": "s", "key": "k"},
                "sentinel": {"masterName": "m", "addresses": ["s1:26379"]},
            },
        }
    )
    limits = RateLimits.model_validate(LIMITS)
    rc = RunConfig(
        name="a",
        namespace="b",
        image="c",
        session_storage=runconfig_session_storage(storage, namespace="b", name="a"),
        rate_limits=runconfig_rate_limits(limits),
    )
    text = render_runconfig_json(rc)
    assert load_runconfig(text) == rc
    assert "rate_limits" in LIVE_FIELDS
    assert "session_storage" not in LIVE_FIELDS
    assert rc.rate_limits is not None
    assert [t.per_subject for t in rc.rate_limits.per_tool] == [True, False]


def test_limits_apply_live_and_storage_rolls_the_proxy() -> None:
    rc = RunConfig(name="a", namespace="b", image="c")
    limited = rc.model_copy(update={"rate_limits": runconfig_rate_limits(RateLimits(**LIMITS))})
    assert restart_checksum(limited) == restart_checksum(rc)
    stored = rc.model_copy(
        update={
            "session_storage": runconfig_session_storage(
                SessionStorage.model_validate(REDIS), namespace="b", name="a"
            )
        }
    )
    assert restart_checksum(stored) != restart_checksum(rc)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"session_storage": {"type": "redis"}}, "session_storage.redis: set exactly"),
        (
            {"session_storage": {"type": "redis", "redis": {"address": "r:1"}}},
            "session_storage.redis.key_prefix: required field is missing",
        ),
        (
            {"rate_limits": {"per_subject": {"requests_per_minute": 0, "burst": 1}}},
            "rate_limits.per_subject.requests_per_minute",
        ),
        (
            {
                "rate_limits": {
                    "per_tool": [
                        {"tool": "a", "requests_per_minute": 1, "burst": 1},
                        {"tool": "a", "requests_per_minute": 1, "burst": 1},
                    ]
                }
            },
            "each tool is limited once",
        ),
    ],
    ids=["redis-missing", "prefix-missing", "zero-rate", "tool-twice"],
)
def test_a_bad_runconfig_names_the_field(change: dict[str, Any], expected: str) -> None:
    data = json.loads(render_runconfig_json(RunConfig(name="a", namespace="b", image="c")))
    data.update(change)
    with pytest.raises(RunConfigError) as info:
        load_runconfig(json.dumps(data))
    assert expected in str(info.value)
