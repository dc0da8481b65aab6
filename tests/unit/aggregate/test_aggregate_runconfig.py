"""The RunConfig's `aggregate` section: what a VirtualMCPServer's proxy may carry, and what not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from moorage_api.runconfig import (
    RunConfig,
    RunConfigError,
    load_runconfig,
    render_runconfig_json,
    restart_checksum,
)

BACKENDS = [
    {"name": "time", "url": "http://mcp-time-proxy.tools.svc:8080/mcp"},
    {"name": "everything", "kind": "MCPRemoteProxy", "url": "http://e.tools.svc/sse"},
]


def aggregate_config(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema_version": "moorage/v1",
        "name": "hub",
        "namespace": "tools",
        "aggregate": {"backends": [dict(b) for b in BACKENDS]},
    }
    data.update(overrides)
    return data


def with_aggregate(**aggregate: Any) -> dict[str, Any]:
    return aggregate_config(aggregate={"backends": [dict(b) for b in BACKENDS], **aggregate})


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(RunConfigError) as caught:
        load_runconfig(json.dumps(data))
    return str(caught.value)


@pytest.mark.parametrize(
    "resolution",
    [
        {"strategy": "prefix", "separator": "__"},
        {"strategy": "priority", "priority": ["everything", "time"]},
        {"strategy": "manual", "manual": {"time/echo": "time_echo", "everything/echo": "echo"}},
    ],
)
def test_an_aggregate_runconfig_needs_no_image_and_round_trips(resolution: dict[str, Any]) -> None:
    backends = [
        {
            **BACKENDS[0],
            "transport": "sse",
            "tools_filter": ["get_current_time"],
            "tools_override": {"get_current_time": {"name": "now"}},
            "outgoing_auth": {
                "type": "bearerToken",
                "config_name": "time-token",
                "bearer_token": {"env": "MOORAGE_BACKEND_TIME_TOKEN"},
            },
        },
        BACKENDS[1],
    ]
    rc = RunConfig.model_validate(
        aggregate_config(
            aggregate={
                "backends": backends,
                "conflict_resolution": resolution,
                "health_check_interval_seconds": 5,
            }
        )
    )
    assert rc.image == ""
    assert rc.aggregate is not None
    assert [b.name for b in rc.aggregate.backends] == ["time", "everything"]
    assert rc.aggregate.backends[1].transport == "streamable-http"
    assert load_runconfig(render_runconfig_json(rc)) == rc


def test_defaults_are_prefix_with_an_underscore() -> None:
    rc = load_runconfig(json.dumps(aggregate_config()))
    assert rc.aggregate is not None
    resolution = rc.aggregate.conflict_resolution
    assert (resolution.strategy, resolution.separator) == ("prefix", "_")
    assert rc.aggregate.health_check_interval_seconds == 30


def test_a_change_of_backends_restarts_the_proxy() -> None:
    before = load_runconfig(json.dumps(aggregate_config()))
    after = load_runconfig(json.dumps(with_aggregate(health_check_interval_seconds=7)))
    assert restart_checksum(before) != restart_checksum(after)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (aggregate_config(image="ghcr.io/x/y:1"), "image: not allowed with aggregate"),
        (aggregate_config(args=["--x"]), "args: not allowed with aggregate"),
        (
            aggregate_config(remote={"url": "https://mcp.example.com/mcp"}),
            "remote: not allowed with aggregate",
        ),
        (
            aggregate_config(outgoing_auth={"type": "unauthenticated", "config_name": "c"}),
            "outgoing_auth: not allowed with aggregate; set it per backend",
        ),
        (aggregate_config(aggregate={"backends": []}), "aggregate.backends"),
        (
            aggregate_config(aggregate={"backends": [BACKENDS[0], BACKENDS[0]]}),
            "aggregate.backends: duplicate names ['time']",
        ),
        (
            aggregate_config(aggregate={"backends": [{**BACKENDS[0], "name": "Time"}]}),
            "aggregate.backends[0].name",
        ),
        (
            aggregate_config(aggregate={"backends": [{**BACKENDS[0], "name": "a" * 64}]}),
            "aggregate.backends[0].name",
        ),
        (
            aggregate_config(aggregate={"backends": [{**BACKENDS[0], "url": "ftp://x/"}]}),
            "backend time: url: 'ftp://x/' must use http or https",
        ),
        (
            aggregate_config(aggregate={"backends": [{**BACKENDS[0], "kind": "Pod"}]}),
            "aggregate.backends[0].kind",
        ),
        (
            aggregate_config(aggregate={"backends": [{**BACKENDS[0], "transport": "stdio"}]}),
            "aggregate.backends[0].transport",
        ),
        (
            aggregate_config(
                aggregate={
                    "backends": [
                        {
                            **BACKENDS[0],
                            "outgoing_auth": {"type": "bearerToken", "config_name": "c"},
                        }
                    ]
                }
            ),
            "outgoing_auth.bearer_token: required when type is bearerToken",
        ),
        (
            with_aggregate(conflict_resolution={"strategy": "first"}),
            "aggregate.conflict_resolution.strategy",
        ),
        (
            with_aggregate(conflict_resolution={"separator": "/"}),
            "aggregate.conflict_resolution.separator",
        ),
        (
            with_aggregate(conflict_resolution={"separator": ""}),
            "aggregate.conflict_resolution.separator",
        ),
        (
            with_aggregate(conflict_resolution={"strategy": "prefix", "priority": ["time"]}),
            "conflict_resolution.priority: only with strategy priority",
        ),
        (
            with_aggregate(conflict_resolution={"strategy": "priority", "priority": ["nope"]}),
            "conflict_resolution.priority: unknown backends ['nope']",
        ),
        (
            with_aggregate(
                conflict_resolution={"strategy": "priority", "priority": ["time", "time"]}
            ),
            "conflict_resolution.priority: duplicate backends ['time']",
        ),
        (
            with_aggregate(conflict_resolution={"strategy": "prefix", "manual": {"time/a": "b"}}),
            "conflict_resolution.manual: only with strategy manual",
        ),
        (
            with_aggregate(conflict_resolution={"strategy": "manual", "manual": {"echo": "e"}}),
            "conflict_resolution.manual: key 'echo' must be '<backend>/<name>'",
        ),
        (
            with_aggregate(conflict_resolution={"strategy": "manual", "manual": {"time/a": ""}}),
            "conflict_resolution.manual: 'time/a' maps to an empty name",
        ),
        (
            with_aggregate(
                conflict_resolution={
                    "strategy": "manual",
                    "manual": {"time/a": "x", "everything/a": "x"},
                }
            ),
            "conflict_resolution.manual: names exposed twice ['x']",
        ),
        (
            with_aggregate(conflict_resolution={"strategy": "manual", "manual": {"nope/a": "x"}}),
            "conflict_resolution.manual: unknown backends in ['nope/a']",
        ),
        (with_aggregate(health_check_interval_seconds=0), "health_check_interval_seconds"),
        (with_aggregate(unknown=1), "aggregate.unknown: unknown field"),
    ],
)
def test_an_aggregate_runconfig_refuses_with_the_field_named(
    data: dict[str, Any], message: str
) -> None:
    assert message in error_of(data)


def test_a_workload_runconfig_still_needs_an_image() -> None:
    assert "image: required unless remote is set" in error_of(aggregate_config(aggregate=None))
