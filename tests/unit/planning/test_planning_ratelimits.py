"""An MCPServer's `sessionStorage` and `rateLimits` in its children: the RunConfig carries them
(the password only as an env name), the proxy Deployment sets that env from the Secret, and the
proxy may read a TLS CA ConfigMap."""

from __future__ import annotations

import json
from typing import Any

from planning_fixtures import NAMESPACE, SETTINGS, by_kind, server

from moorage_api.runconfig import REDIS_PASSWORD_ENV, load_runconfig
from moorage_operator.planning import desired_children

STORAGE = {
    "type": "redis",
    "redis": {
        "address": "redis.cache:6379",
        "passwordSecretRef": {"name": "redis-auth", "key": "password"},
        "tls": {"enabled": True, "caConfigMapRef": {"name": "redis-ca", "key": "ca.crt"}},
    },
}
LIMITS = {
    "perSubject": {"requestsPerMinute": 60, "burst": 5},
    "perTool": [{"tool": "get_time", "requestsPerMinute": 6, "burst": 1, "perSubject": False}],
}


def children(**spec: Any) -> list[dict[str, Any]]:
    return desired_children(server(**spec), settings=SETTINGS)


def test_the_runconfig_carries_storage_and_limits_without_the_password() -> None:
    made = children(sessionStorage=STORAGE, rateLimits=LIMITS)
    text = by_kind(made, "ConfigMap")["data"]["runconfig.json"]
    rc = load_runconfig(text)
    assert rc.rate_limits is not None
    assert rc.rate_limits.per_subject is not None
    assert rc.rate_limits.per_subject.burst == 5
    assert rc.rate_limits.per_tool[0].per_subject is False
    redis = rc.session_storage.redis
    assert redis is not None
    assert redis.key_prefix == f"moorage:{NAMESPACE}:time:"
    assert redis.password is not None
    assert redis.password.env == REDIS_PASSWORD_ENV
    assert "value" not in json.dumps(json.loads(text)["session_storage"]["redis"]["password"])


def test_the_proxy_gets_the_password_from_the_secret() -> None:
    deployment = by_kind(children(sessionStorage=STORAGE), "Deployment")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {
        "name": REDIS_PASSWORD_ENV,
        "valueFrom": {"secretKeyRef": {"name": "redis-auth", "key": "password"}},
    } in env


def test_the_proxy_may_read_the_ca_config_map() -> None:
    role = by_kind(children(sessionStorage=STORAGE), "Role")
    configmaps = next(r for r in role["rules"] if r["resources"] == ["configmaps"])
    assert "redis-ca" in configmaps["resourceNames"]


def test_memory_storage_adds_no_env_and_no_limits() -> None:
    made = children()
    rc = load_runconfig(by_kind(made, "ConfigMap")["data"]["runconfig.json"])
    assert rc.session_storage.type == "memory"
    assert rc.rate_limits is None
    env = by_kind(made, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert all(var["name"] != REDIS_PASSWORD_ENV for var in env)
