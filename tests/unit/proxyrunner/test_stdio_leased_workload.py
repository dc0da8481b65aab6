"""A stdio server whose proxies share sessions through Redis runs one backend pod per proxy
replica: the RunConfig's `proxy_replicas` sizes the StatefulSet; any other server runs one."""

from __future__ import annotations

from typing import Any

import pytest

from moorage_api.runconfig import RunConfig
from moorage_proxyrunner.workload.builders import build_statefulset, workload_spec_from_runconfig

REDIS: dict[str, Any] = {"type": "redis", "redis": {"address": "redis:6379", "key_prefix": "p:"}}


def runconfig(**fields: Any) -> RunConfig:
    return RunConfig.model_validate(
        {"name": "time", "namespace": "tools", "image": "t:1", **fields}
    )


@pytest.mark.parametrize(
    ("fields", "ordinals", "replicas"),
    [
        pytest.param({"session_storage": REDIS, "proxy_replicas": 3}, 3, 3, id="three-proxies"),
        pytest.param({"session_storage": REDIS}, 1, 1, id="redis-one-proxy"),
        pytest.param({"proxy_replicas": 3}, None, 1, id="memory"),
        pytest.param({}, None, 1, id="plain"),
    ],
)
def test_the_statefulset_runs_a_pod_per_leased_ordinal(
    fields: dict[str, Any], ordinals: int | None, replicas: int
) -> None:
    spec = workload_spec_from_runconfig(runconfig(**fields))
    assert spec.leased_ordinals == ordinals
    assert build_statefulset(spec)["spec"]["replicas"] == replicas


def test_an_http_server_is_not_leased() -> None:
    rc = runconfig(
        transport="streamable-http",
        proxy_mode="streamable-http",
        session_storage=REDIS,
        proxy_replicas=3,
        backend_replicas=2,
    )
    spec = workload_spec_from_runconfig(rc)
    assert spec.leased_ordinals is None
    assert build_statefulset(spec)["spec"]["replicas"] == 2
