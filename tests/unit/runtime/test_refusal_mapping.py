"""A FailedCreate Event about a StatefulSet enqueues the MCPServer labelled on that StatefulSet."""

from __future__ import annotations

from typing import Any

import pytest

from moorage_core.kube import STATEFULSETS
from moorage_operator.runtime.cache import Cache
from moorage_operator.runtime.controller import Request
from moorage_operator.wiring.mcpservers import refused_statefulset_mapper


def statefulset(name: str, *, server: str | None) -> dict[str, Any]:
    labels = {"moorage.dev/mcpserver": server} if server else {}
    return {"metadata": {"name": name, "namespace": "ns", "labels": labels, "resourceVersion": "1"}}


def failed_create(statefulset_name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{statefulset_name}.1", "namespace": "ns"},
        "involvedObject": {"kind": "StatefulSet", "name": statefulset_name, "namespace": "ns"},
        "reason": "FailedCreate",
    }


@pytest.mark.parametrize(
    ("event_about", "requests"),
    [
        pytest.param("time", [Request("ns", "time")], id="ours"),
        pytest.param("database", [], id="a-statefulset-not-ours"),
        pytest.param("gone", [], id="a-statefulset-not-cached"),
    ],
)
def test_maps_a_refusal_to_the_server_of_its_statefulset(
    event_about: str, requests: list[Request]
) -> None:
    cache = Cache(STATEFULSETS)
    cache.upsert(statefulset("time", server="time"))
    cache.upsert(statefulset("database", server=None))
    assert refused_statefulset_mapper(cache)(failed_create(event_about)) == requests
