"""`spec.sessionStorage` and `spec.rateLimits` at admission: good settings are admitted, bad ones
refused with a message naming the field and what is expected."""

from __future__ import annotations

from typing import Any

import pytest
from webhook_samples import mcpremoteproxy, mcpserver, virtualmcpserver

from moorage_api.sessionstorage import REPLICAS_NEED_REDIS
from moorage_webhook.validation import (
    validate_mcpremoteproxy,
    validate_mcpserver,
    validate_virtualmcpserver,
)


def messages(spec: dict[str, Any]) -> list[str]:
    verdict = validate_mcpserver(mcpserver(spec))
    assert not verdict.allowed
    return [str(e) for e in verdict.errors]


def test_redis_storage_and_limits_are_admitted() -> None:
    verdict = validate_mcpserver(
        mcpserver(
            {
                "sessionStorage": {
                    "type": "redis",
                    "redis": {
                        "address": "redis.cache.svc:6379",
                        "passwordSecretRef": {"name": "redis", "key": "password"},
                        "keyPrefix": "moorage:team:time:",
                    },
                },
                "rateLimits": {
                    "perSubject": {"requestsPerMinute": 600, "burst": 20},
                    "perTool": [{"tool": "get_time", "requestsPerMinute": 6, "burst": 1}],
                    "whenUnavailable": "deny",
                },
            }
        )
    )
    assert verdict.allowed, verdict.errors


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"sessionStorage": {"type": "redis"}},
            "spec.sessionStorage: redis: required when type is redis",
        ),
        (
            {"sessionStorage": {"type": "redis", "redis": {"address": "redis"}}},
            "spec.sessionStorage.redis.address: String should match pattern",
        ),
        (
            {"sessionStorage": {"type": "redis", "redis": {"address": "r:1", "keyPrefix": "a/b"}}},
            "spec.sessionStorage.redis.keyPrefix: String should match pattern",
        ),
        (
            {"rateLimits": {"perSubject": {"requestsPerMinute": 10, "burst": 0}}},
            "spec.rateLimits.perSubject.burst: Input should be greater than or equal to 1",
        ),
        (
            {
                "rateLimits": {
                    "perTool": [
                        {"tool": "t", "requestsPerMinute": 1, "burst": 1},
                        {"tool": "t", "requestsPerMinute": 1, "burst": 1},
                    ]
                }
            },
            "spec.rateLimits.perTool: each tool is limited once: t listed again",
        ),
        ({"rateLimits": {}}, "spec.rateLimits: needs perSubject or at least one perTool limit"),
    ],
    ids=["redis-missing", "address", "prefix", "burst", "tool-twice", "nothing-limited"],
)
def test_bad_settings_are_refused_naming_the_field(spec: dict[str, Any], expected: str) -> None:
    found = messages(spec)
    assert any(m.startswith(expected) for m in found), found


REDIS = {"type": "redis", "redis": {"address": "redis:6379"}}
SUBJECT = {"perSubject": {"requestsPerMinute": 60, "burst": 5}}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"rateLimits": {**SUBJECT, "whenUnavailable": "deny"}},
            "spec.rateLimits.whenUnavailable: only applies to sessionStorage.type redis",
        ),
        (
            {
                "rateLimits": SUBJECT,
                "sessionStorage": {
                    "type": "redis",
                    "redis": {
                        "address": "redis:6379",
                        "tls": {"enabled": True, "insecureSkipVerify": True},
                    },
                },
            },
            "spec.sessionStorage.redis.tls.insecureSkipVerify: the Redis server's certificate",
        ),
    ],
    ids=["deny-in-memory", "insecure-tls"],
)
def test_likely_mistakes_are_admitted_with_a_warning(spec: dict[str, Any], expected: str) -> None:
    verdict = validate_mcpserver(mcpserver(spec))
    assert verdict.allowed, verdict.errors
    assert any(str(w).startswith(expected) for w in verdict.warnings), verdict.warnings


@pytest.mark.parametrize(
    "spec",
    [
        {"rateLimits": SUBJECT},
        {"rateLimits": SUBJECT, "replicas": 1, "transport": "streamable-http"},
        {
            "rateLimits": SUBJECT,
            "replicas": 3,
            "transport": "streamable-http",
            "sessionStorage": REDIS,
        },
    ],
    ids=["one-proxy", "one-replica", "shared-in-redis"],
)
def test_sound_settings_get_no_warning(spec: dict[str, Any]) -> None:
    verdict = validate_mcpserver(mcpserver(spec))
    assert verdict.allowed, verdict.errors
    assert not verdict.warnings, verdict.warnings


KINDS = {
    "mcpserver": (lambda spec: mcpserver(spec), validate_mcpserver),
    "mcpremoteproxy": (lambda spec: mcpremoteproxy(spec), validate_mcpremoteproxy),
    "virtualmcpserver": (lambda spec: virtualmcpserver(**spec), validate_virtualmcpserver),
}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("transport", [None, "streamable-http"], ids=["default", "http"])
def test_several_replicas_with_memory_storage_are_refused_saying_why(
    kind: str, transport: str | None
) -> None:
    build, validate = KINDS[kind]
    spec: dict[str, Any] = {"replicas": 3}
    if transport is not None and kind == "mcpserver":
        spec["transport"] = transport
    verdict = validate(build(spec))
    assert not verdict.allowed
    assert [str(e) for e in verdict.errors] == [f"spec.replicas: {REPLICAS_NEED_REDIS}"]


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("replicas", [0, 1, 3])
def test_replicas_with_redis_storage_or_at_most_one_are_admitted(kind: str, replicas: int) -> None:
    build, validate = KINDS[kind]
    spec: dict[str, Any] = {"replicas": replicas}
    if replicas > 1:
        spec["sessionStorage"] = REDIS
    verdict = validate(build(spec))
    assert verdict.allowed, verdict.errors
    assert not [w for w in verdict.warnings if str(w).startswith("spec.replicas")]


def test_a_stdio_server_with_redis_runs_its_replicas_without_a_warning() -> None:
    verdict = validate_mcpserver(mcpserver({"replicas": 3, "sessionStorage": REDIS}))
    assert verdict.allowed, verdict.errors
    assert not verdict.warnings, verdict.warnings


def test_the_message_says_why_and_what_to_do() -> None:
    assert "may land on any replica" in REPLICAS_NEED_REDIS
    assert "set sessionStorage.type to redis, or replicas to 1" in REPLICAS_NEED_REDIS


def test_a_stdio_server_with_redis_and_unset_replicas_is_warned_about_autoscaling() -> None:
    verdict = validate_mcpserver(mcpserver({"sessionStorage": REDIS}))
    assert verdict.allowed, verdict.errors
    assert [str(w) for w in verdict.warnings if str(w).startswith("spec.replicas")] == [
        "spec.replicas: unset (an autoscaler decides): a stdio server runs one backend pod per "
        "proxy replica only for a set replicas; proxy replicas an autoscaler adds wait for a "
        "backend pod that never comes"
    ]
