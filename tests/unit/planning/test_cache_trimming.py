"""The cache's per-kind transforms keep every field the comparer and the status code read."""

from __future__ import annotations

import copy
import enum
import json
import sys
from typing import Any

import pytest
from planning_fixtures import NAMESPACE, SETTINGS, live_copy, server

from moorage_core.kube import CORE_EVENTS, DEPLOYMENTS, PODS, STATEFULSETS, ResourceKind
from moorage_operator.planning import desired_children
from moorage_operator.planning.comparing import is_applied
from moorage_operator.planning.mcpregistries.apiservice import is_deployment_ready
from moorage_operator.planning.mcpservers.status import (
    Observed,
    compute_phase,
    describe_refusal,
    pod_failure,
    ready_replicas,
    wanted_replicas,
)
from moorage_operator.reconcilers.mcpservers import CHILD_KINDS
from moorage_operator.runtime.cache import Cache
from moorage_operator.runtime.trimming import (
    EVENT_FIELDS,
    LAST_APPLIED,
    share_strings,
    transform_for,
)

MANAGED_FIELDS = [
    {"manager": "moorage-operator", "operation": "Apply", "fieldsV1": {"f:spec": {}}},
    {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status"},
]


def from_apiserver(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` as the apiserver returns it: server metadata, defaults, managedFields, status."""
    live = live_copy(obj)
    meta = live["metadata"]
    meta.update(generation=2, managedFields=copy.deepcopy(MANAGED_FIELDS))
    meta.setdefault("annotations", {})[LAST_APPLIED] = '{"apiVersion":"v1"}'
    if live["kind"] == "Deployment":
        live["status"] = {
            "observedGeneration": 2,
            "replicas": 1,
            "updatedReplicas": 1,
            "readyReplicas": 1,
            "availableReplicas": 1,
            "conditions": [
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
            ],
        }
    return live


def trimmed(kind: ResourceKind, obj: dict[str, Any]) -> dict[str, Any]:
    cache = Cache(kind)
    cache.upsert(obj)
    meta = obj["metadata"]
    stored = cache.get(meta["name"], namespace=meta.get("namespace", ""))
    assert stored is not None
    return stored


@pytest.mark.parametrize("index", range(7))
def test_every_applied_child_still_compares_equal_after_trimming(index: int) -> None:
    child = desired_children(server(), settings=SETTINGS)[index]
    kind = CHILD_KINDS[(child["apiVersion"], child["kind"])]
    stored = trimmed(kind, from_apiserver(child))
    assert is_applied(child, stored)  # zero writes: the comparer still sees every field we own
    assert "managedFields" not in stored["metadata"]
    assert LAST_APPLIED not in stored["metadata"].get("annotations", {})


def test_a_deployment_keeps_only_the_status_its_readers_use() -> None:
    deployment = next(
        c for c in desired_children(server(), settings=SETTINGS) if c["kind"] == "Deployment"
    )
    live = from_apiserver(deployment)
    before = (ready_replicas(live), is_deployment_ready(live), Observed(deployment=live))
    stored = trimmed(DEPLOYMENTS, copy.deepcopy(live))
    assert stored["status"] == {
        "observedGeneration": 2,
        "readyReplicas": 1,
        "conditions": live["status"]["conditions"],
    }
    assert stored["spec"] == live["spec"]  # what we apply, defaults included
    assert (ready_replicas(stored), is_deployment_ready(stored)) == before[:2]
    phase = compute_phase(server(), problems=(), observed=Observed(deployment=stored))
    assert phase == compute_phase(server(), problems=(), observed=before[2])


def statefulset() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": "time",
            "namespace": "ns",
            "uid": "sts-1",
            "resourceVersion": "7",
            "labels": {"moorage.dev/mcpserver": "time"},
            "managedFields": copy.deepcopy(MANAGED_FIELDS),
        },
        "spec": {
            "replicas": 2,
            "serviceName": "time",
            "selector": {"matchLabels": {"app": "time"}},
            "template": {"spec": {"containers": [{"name": "mcp", "image": "x"}]}},
            "volumeClaimTemplates": [],
        },
        "status": {"replicas": 2, "readyReplicas": 1, "currentRevision": "time-1"},
    }


def test_a_statefulset_keeps_its_replicas_and_ready_replicas() -> None:
    stored = trimmed(STATEFULSETS, statefulset())
    assert stored["spec"] == {"replicas": 2}
    assert stored["status"] == {"readyReplicas": 1}
    assert stored["metadata"]["labels"] == {"moorage.dev/mcpserver": "time"}
    assert (wanted_replicas(stored), ready_replicas(stored)) == (2, 1)


def pod(waiting: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "time-0",
            "namespace": "ns",
            "resourceVersion": "9",
            "labels": {"moorage.dev/mcpserver": "time", "app.kubernetes.io/component": "mcp"},
            "managedFields": copy.deepcopy(MANAGED_FIELDS),
        },
        "spec": {"containers": [{"name": "mcp", "image": "x", "env": [{"name": "A"}]}]},
        "status": {
            "phase": "Pending",
            "podIP": "10.0.0.3",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [
                {
                    "name": "mcp",
                    "image": "x",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 4,
                    "state": {"waiting": {"reason": waiting, "message": "back-off"}},
                }
            ],
        },
    }


def test_a_pod_keeps_only_its_container_states() -> None:
    stored = trimmed(PODS, pod("CrashLoopBackOff"))
    assert "spec" not in stored
    assert stored["status"] == {
        "containerStatuses": [
            {
                "name": "mcp",
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
            }
        ]
    }
    assert pod_failure(stored) == pod_failure(pod("CrashLoopBackOff")) == "CrashLoopBackOff"


def test_a_refusal_event_keeps_what_describe_refusal_reads() -> None:
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "time.1", "namespace": "ns", "resourceVersion": "3"},
        "involvedObject": {
            "kind": "StatefulSet",
            "name": "time",
            "namespace": "ns",
            "uid": "sts-1",
        },
        "reason": "FailedCreate",
        "message": "pods is forbidden: violates PodSecurity",
        "type": "Warning",
        "count": 12,
        "source": {"component": "statefulset-controller"},
        "firstTimestamp": "2025-01-01T00:00:00Z",
        "lastTimestamp": "2025-01-01T00:05:00Z",
        "reportingComponent": "statefulset-controller",
    }
    sts = trimmed(STATEFULSETS, statefulset())
    before = describe_refusal(Observed(statefulset=sts, refusals=[copy.deepcopy(event)]))
    stored = trimmed(CORE_EVENTS, event)
    assert set(stored) == set(EVENT_FIELDS) - {"eventTime"}  # source, count, type... gone
    assert describe_refusal(Observed(statefulset=sts, refusals=[stored])) == before
    assert before is not None
    assert "PodSecurity" in before


def test_other_kinds_lose_only_managed_fields_and_the_last_applied_copy() -> None:
    obj = {
        "metadata": {
            "name": "x",
            "managedFields": [],
            "annotations": {LAST_APPLIED: "{}", "keep": "1"},
        },
        "data": {"a": "b"},
    }
    assert transform_for(ResourceKind("", "v1", "configmaps", "ConfigMap"))(obj) == {
        "metadata": {"name": "x", "annotations": {"keep": "1"}},
        "data": {"a": "b"},
    }


def test_equal_strings_of_two_cached_objects_are_one_object() -> None:
    cache = Cache(DEPLOYMENTS)
    for name in ("a", "b"):
        child = next(
            c
            for c in desired_children(server(name), settings=SETTINGS)
            if c["kind"] == "Deployment"
        )
        # Decoded separately, as the informer does: equal strings are distinct objects.
        cache.upsert(json.loads(json.dumps(from_apiserver(child))))
    a, b = (cache.get(name, namespace=NAMESPACE) for name in ("a", "b"))
    assert a is not None
    assert b is not None
    key_a = next(k for k in a["spec"] if k == "template")
    key_b = next(k for k in b["spec"] if k == "template")
    assert key_a is key_b
    image_a = a["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image_a is b["spec"]["template"]["spec"]["containers"][0]["image"]


def statefulset_and_pod_and_event() -> list[tuple[ResourceKind, dict[str, Any]]]:
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "time.1", "namespace": "ns", "resourceVersion": "3"},
        "involvedObject": {"kind": "Deployment", "name": "time-proxy"},
        "reason": "FailedCreate",
        "message": "forbidden",
        "source": {"component": "replicaset-controller"},
        "count": 3,
    }
    return [(STATEFULSETS, statefulset()), (PODS, pod("ErrImagePull")), (CORE_EVENTS, event)]


def test_transforming_a_transformed_object_changes_nothing() -> None:
    # The informer trims a list's items page by page and the cache transforms them again.
    cases = [
        (CHILD_KINDS[(c["apiVersion"], c["kind"])], from_apiserver(c))
        for c in desired_children(server(), settings=SETTINGS)
    ] + statefulset_and_pod_and_event()
    for kind, obj in cases:
        transform = transform_for(kind)
        once = transform(copy.deepcopy(obj))
        assert transform(copy.deepcopy(once)) == once, kind.kind
        assert trimmed(kind, copy.deepcopy(once)) == once, kind.kind


def test_string_subclasses_are_kept_as_they_are_not_interned() -> None:
    class Phase(enum.StrEnum):
        READY = "Ready"

    obj = {"metadata": {"name": "x"}, "status": {"phase": Phase.READY, Phase.READY: "key"}}
    shared = share_strings(obj)
    assert shared == {"metadata": {"name": "x"}, "status": {"phase": "Ready", "Ready": "key"}}
    assert type(shared["status"]["phase"]) is Phase
    assert shared["metadata"]["name"] is sys.intern("x")
