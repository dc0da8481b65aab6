"""What the proxy needs from outside before it can count in Redis: the password from the
variable the RunConfig names, the CA bundle from the ConfigMap it names; each missing piece is
an error naming the RunConfig field and what is missing."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any, cast

import pytest

from moorage_api.runconfig import REDIS_PASSWORD_ENV, RunConfig, RunConfigRedis
from moorage_core.errors import NotFound
from moorage_core.kube import KubeClient
from moorage_core.startup import EXIT_CONFIG, StartupFailure
from moorage_proxyrunner.sessionstore.redisconn import (
    RedisSettingError,
    connection_options,
    fetch_redis_ca,
)
from moorage_proxyrunner.startup.cluster import ClusterOptions, prepare

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


class ConfigMaps:
    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        self.objects = objects
        self.asked: list[tuple[str, str | None]] = []

    async def get(self, kind: Any, *, name: str, namespace: str | None = None) -> dict[str, Any]:
        self.asked.append((name, namespace))
        if name not in self.objects:
            raise NotFound("configmaps not found", status=404, reason="NotFound")
        return self.objects[name]


def runconfig(tls: dict[str, Any] | None) -> RunConfig:
    redis: dict[str, Any] = {"address": "redis:6379", "key_prefix": "p:"}
    if tls is not None:
        redis["tls"] = tls
    return RunConfig.model_validate(
        {
            "name": "time",
            "namespace": "team",
            "image": "i",
            "session_storage": {"type": "redis", "redis": redis},
        }
    )


CA_TLS = {"enabled": True, "ca_config_map_ref": {"name": "redis-ca", "key": "ca.crt"}}


async def test_no_ca_config_map_reads_nothing() -> None:
    kube = ConfigMaps({})
    assert await fetch_redis_ca(cast("KubeClient", kube), runconfig({"enabled": True})) is None
    assert kube.asked == []


async def test_the_ca_is_read_from_the_proxys_namespace() -> None:
    kube = ConfigMaps({"redis-ca": {"data": {"ca.crt": PEM}}})
    assert await fetch_redis_ca(cast("KubeClient", kube), runconfig(CA_TLS)) == PEM
    assert kube.asked == [("redis-ca", "team")]


@pytest.mark.parametrize(
    ("objects", "expected"),
    [
        ({}, "ConfigMap redis-ca: 404 NotFound"),
        ({"redis-ca": {"data": {"other": PEM}}}, "ConfigMap redis-ca has no key ca.crt"),
    ],
    ids=["missing-config-map", "missing-key"],
)
async def test_a_missing_ca_names_the_field(objects: dict[str, Any], expected: str) -> None:
    with pytest.raises(RedisSettingError) as info:
        await fetch_redis_ca(cast("KubeClient", ConfigMaps(objects)), runconfig(CA_TLS))
    assert str(info.value).startswith("session_storage.redis.tls.ca_config_map_ref: ")
    assert expected in str(info.value)


def test_connection_options_carry_password_tls_and_timeouts() -> None:
    redis = RunConfigRedis.model_validate(
        {
            "address": "r:1",
            "key_prefix": "p:",
            "db": 2,
            "password": {"env": "PW"},
            "tls": {"enabled": True, "insecure_skip_verify": True},
        }
    )
    options = connection_options(redis, environ={"PW": "hunter2"})
    assert options["password"] == "hunter2"
    assert options["db"] == 2
    assert options["ssl"] is True
    assert options["ssl_cert_reqs"] == ssl.CERT_NONE
    assert options["socket_timeout"] <= 1
    with pytest.raises(RedisSettingError, match="environment variable PW is not set"):
        connection_options(redis, environ={"PW": ""})
    ca = connection_options(
        redis.model_copy(
            update={"tls": redis.tls.model_copy(update={"insecure_skip_verify": False})}
        ),  # type: ignore[union-attr]
        environ={"PW": "x"},
        ca_data=PEM,
    )
    assert ca["ssl_ca_data"] == PEM
    assert "ssl_cert_reqs" not in ca


def test_a_missing_password_variable_stops_the_start_up_before_anything_is_applied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(REDIS_PASSWORD_ENV, raising=False)
    data = runconfig(None).model_dump(mode="json")
    data["session_storage"]["redis"]["password"] = {"env": REDIS_PASSWORD_ENV}
    with pytest.raises(StartupFailure) as info:
        prepare(ClusterOptions(config=Path("x")), runconfig_text=json.dumps(data))
    assert str(info.value).startswith(
        f"sessionStorage.redis: session_storage.redis.password: environment variable "
        f"{REDIS_PASSWORD_ENV} is not set"
    )
    assert info.value.exit_code == EXIT_CONFIG
    monkeypatch.setenv(REDIS_PASSWORD_ENV, "hunter2")
    prepared = prepare(ClusterOptions(config=Path("x")), runconfig_text=json.dumps(data))
    assert prepared.runconfig.session_storage.type == "redis"
