"""An MCPServer's phase, conditions and status from its plan and what runs."""

from __future__ import annotations

from typing import Any

import pytest
from planning_fixtures import SETTINGS, config_map, raw_server, server, tool_config, with_metadata

from moorage_api.mcpserver import MCPServer
from moorage_operator.planning import References, plan_mcpserver
from moorage_operator.planning.conditions import status_patch
from moorage_operator.planning.mcpservers.status import (
    STATUS_FIELDS,
    Observed,
    compute_invalid_status,
    compute_status,
    phase_event,
)

NOW = "2025-06-01T12:00:00Z"
LATER = "2025-06-01T12:05:00Z"


def workload(kind: str, *, ready: int, replicas: int = 1, **status: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {"name": "time"},
        "spec": {"replicas": replicas},
        "status": {"readyReplicas": ready, **status} if ready else dict(status),
    }


def pod(
    name: str,
    *,
    component: str,
    waiting: str | None = None,
    init: bool = False,
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "labels": {"moorage.dev/mcpserver": "time", "app.kubernetes.io/component": component},
    }
    if deleting:
        meta["deletionTimestamp"] = NOW
    statuses = [
        {"name": "c", "state": {"waiting": {"reason": waiting}} if waiting else {"running": {}}}
    ]
    key = "initContainerStatuses" if init else "containerStatuses"
    return {"metadata": meta, "status": {key: statuses}}


READY_DEPLOYMENT = workload("Deployment", ready=1)
READY_STATEFULSET = workload("StatefulSet", ready=1)
PODLESS_STATEFULSET = {
    **workload("StatefulSet", ready=0),
    "metadata": {"name": "time", "uid": "sts-2"},
}
FORBIDDEN = (
    'create Pod time-0 in StatefulSet time failed error: pods "time-0" is forbidden: violates '
    'PodSecurity "restricted:latest": runAsNonRoot != true (pod must not set '
    "securityContext.runAsNonRoot=false)"
)


def failed_create(message: str, *, uid: str = "sts-2", at: str = NOW) -> dict[str, Any]:
    """A core Event as the StatefulSet controller records it when a pod is refused."""
    return {
        "metadata": {"name": f"time.{at}", "namespace": "ns"},
        "involvedObject": {"kind": "StatefulSet", "name": "time", "uid": uid},
        "reason": "FailedCreate",
        "message": message,
        "lastTimestamp": at,
    }


def status_of(
    srv: MCPServer,
    observed: Observed,
    *,
    references: References | None = None,
    previous: dict[str, Any] | None = None,
    now: str = NOW,
) -> dict[str, Any]:
    plan = plan_mcpserver(srv, settings=SETTINGS, references=references or References())
    return compute_status(srv, plan=plan, observed=observed, previous=previous or {}, now=now)


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    found = [c for c in status["conditions"] if c["type"] == type_]
    assert len(found) == 1
    return dict(found[0])


@pytest.mark.parametrize(
    ("spec", "observed", "phase", "message"),
    [
        pytest.param(
            {},
            Observed(),
            "Pending",
            "Waiting for the proxy runner Deployment to be created",
            id="nothing-yet",
        ),
        pytest.param(
            {},
            Observed(deployment=workload("Deployment", ready=0)),
            "Pending",
            "Waiting for the proxy runner to become ready (0/1 replicas ready)",
            id="proxy-not-ready",
        ),
        pytest.param(
            {},
            Observed(deployment=READY_DEPLOYMENT),
            "Pending",
            "Waiting for the proxy runner to create the MCP server's StatefulSet",
            id="no-statefulset",
        ),
        pytest.param(
            {},
            Observed(
                deployment=READY_DEPLOYMENT,
                statefulset=workload("StatefulSet", ready=0, replicas=2),
            ),
            "Pending",
            "Waiting for the MCP server to become ready (0/2 replicas ready)",
            id="statefulset-not-ready",
        ),
        pytest.param(
            {},
            Observed(deployment=READY_DEPLOYMENT, statefulset=READY_STATEFULSET),
            "Running",
            "MCP server is running",
            id="running",
        ),
        pytest.param(
            {"replicas": 0},
            Observed(deployment=workload("Deployment", ready=0, replicas=0)),
            "Stopped",
            "MCP server is stopped (replicas: 0)",
            id="stopped",
        ),
        pytest.param(
            {},
            Observed(
                deployment=READY_DEPLOYMENT,
                statefulset=READY_STATEFULSET,
                pods=[pod("time-0", component="mcp-server", waiting="CrashLoopBackOff")],
            ),
            "Failed",
            "MCP server pod failed: CrashLoopBackOff",
            id="crashloop-beats-ready",
        ),
        pytest.param(
            {},
            Observed(pods=[pod("time-0", component="mcp-server", waiting="ErrImagePull")]),
            "Failed",
            "MCP server pod failed: ErrImagePull",
            id="err-image-pull",
        ),
        pytest.param(
            {},
            Observed(pods=[pod("time-abc", component="proxy-runner", waiting="ImagePullBackOff")]),
            "Failed",
            "Proxy runner pod failed: ImagePullBackOff",
            id="proxy-image-pull-backoff",
        ),
        pytest.param(
            {},
            Observed(
                pods=[pod("time-0", component="mcp-server", waiting="CrashLoopBackOff", init=True)]
            ),
            "Failed",
            "MCP server pod failed: CrashLoopBackOff",
            id="init-container",
        ),
        pytest.param(
            {},
            Observed(
                deployment=READY_DEPLOYMENT,
                pods=[pod("time-0", component="mcp-server", waiting="ContainerCreating")],
            ),
            "Pending",
            "Waiting for the proxy runner to create the MCP server's StatefulSet",
            id="container-creating-is-not-failure",
        ),
        pytest.param(
            {},
            Observed(
                deployment=READY_DEPLOYMENT,
                statefulset=READY_STATEFULSET,
                pods=[
                    pod(
                        "time-old",
                        component="proxy-runner",
                        waiting="CrashLoopBackOff",
                        deleting=True,
                    )
                ],
            ),
            "Running",
            "MCP server is running",
            id="terminating-pod-ignored",
        ),
        pytest.param(
            {},
            Observed(
                deployment=workload(
                    "Deployment",
                    ready=0,
                    conditions=[
                        {
                            "type": "Progressing",
                            "status": "False",
                            "reason": "ProgressDeadlineExceeded",
                            "message": 'ReplicaSet "time-1" has timed out progressing.',
                        }
                    ],
                )
            ),
            "Failed",
            'Proxy runner Deployment is not progressing: ReplicaSet "time-1" has timed out progressing.',
            id="progress-deadline",
        ),
        pytest.param(
            {},
            Observed(
                deployment=READY_DEPLOYMENT,
                statefulset=PODLESS_STATEFULSET,
                refusals=[
                    failed_create("exceeded quota", at=NOW),
                    failed_create(FORBIDDEN, at=LATER),
                    failed_create("from a StatefulSet deleted since", uid="sts-1", at=LATER + "1"),
                ],
            ),
            "Failed",
            f"MCP server pod was refused: {FORBIDDEN}",
            id="refused-by-admission-latest-event",
        ),
        pytest.param(
            {},
            Observed(
                deployment=READY_DEPLOYMENT,
                statefulset=PODLESS_STATEFULSET,
                refusals=[failed_create(FORBIDDEN, uid="sts-1")],
            ),
            "Pending",
            "Waiting for the MCP server to become ready (0/1 replicas ready)",
            id="refusal-of-an-earlier-statefulset-ignored",
        ),
        pytest.param(
            {},
            Observed(
                deployment=READY_DEPLOYMENT,
                statefulset=PODLESS_STATEFULSET,
                pods=[pod("time-0", component="mcp-server", waiting="ContainerCreating")],
                refusals=[failed_create(FORBIDDEN)],
            ),
            "Pending",
            "Waiting for the MCP server to become ready (0/1 replicas ready)",
            id="refusal-over-once-a-pod-exists",
        ),
        pytest.param(
            {},
            Observed(
                deployment=READY_DEPLOYMENT,
                statefulset={**PODLESS_STATEFULSET, "spec": {"replicas": 0}},
                refusals=[failed_create(FORBIDDEN)],
            ),
            "Pending",
            "Waiting for the MCP server to become ready (0/0 replicas ready)",
            id="refusal-ignored-when-scaled-to-zero",
        ),
        pytest.param(
            {"toolConfigRef": {"name": "gone"}},
            Observed(deployment=READY_DEPLOYMENT, statefulset=READY_STATEFULSET),
            "Failed",
            'MCPToolConfig "gone" not found',
            id="missing-reference-beats-running",
        ),
    ],
)
def test_phase(spec: dict[str, Any], observed: Observed, phase: str, message: str) -> None:
    status = status_of(server(**spec), observed)
    assert (status["phase"], status["message"]) == (phase, message)
    ready = condition(status, "Ready")
    assert ready["message"] == message
    expected = {"Running": ("True", "Running"), "Failed": ("False", "Failed")}.get(
        phase, ("False", "NotReady")
    )
    assert (ready["status"], ready["reason"]) == expected


def test_terminating_while_deleted_keeps_the_other_conditions() -> None:
    srv = server()
    before = status_of(srv, Observed(deployment=READY_DEPLOYMENT, statefulset=READY_STATEFULSET))
    deleting = with_metadata(srv, deletionTimestamp=LATER, finalizers=["foregroundDeletion"])
    status = status_of(deleting, Observed(), previous=before, now=LATER)
    assert status["phase"] == "Terminating"
    assert condition(status, "Ready")["reason"] == "NotReady"
    others = [c for c in status["conditions"] if c["type"] != "Ready"]
    assert others == [c for c in before["conditions"] if c["type"] != "Ready"]


@pytest.mark.parametrize(
    ("spec", "url"),
    [
        pytest.param(
            {}, "http://mcp-time-proxy.team-a.svc.cluster.local:8080/mcp", id="stdio-default"
        ),
        pytest.param(
            {"proxyMode": "sse", "port": 9000},
            "http://mcp-time-proxy.team-a.svc.cluster.local:9000/sse",
            id="stdio-sse",
        ),
        pytest.param(
            {"transport": "sse"},
            "http://mcp-time-proxy.team-a.svc.cluster.local:8080/sse",
            id="sse",
        ),
        pytest.param(
            {"transport": "streamable-http", "proxyMode": "sse"},
            "http://mcp-time-proxy.team-a.svc.cluster.local:8080/mcp",
            id="streamable-http",
        ),
    ],
)
def test_url(spec: dict[str, Any], url: str) -> None:
    assert status_of(server(**spec), Observed())["url"] == url


def test_status_fields() -> None:
    status = status_of(
        server(toolConfigRef={"name": "tools"}),
        Observed(
            deployment=workload("Deployment", ready=2, replicas=2), statefulset=READY_STATEFULSET
        ),
        references=References(tool_config=tool_config(toolsFilter=["a"])),
    )
    assert set(status) == set(STATUS_FIELDS)
    assert status["readyReplicas"] == 2
    assert status["observedGeneration"] == 3
    assert len(status["toolConfigHash"]) == 16
    assert [c["type"] for c in status["conditions"]] == [
        "Ready",
        "PodTemplateValid",
        "ToolConfigResolved",
        "AuthConfigValid",
        "StdioReplicaCapped",
    ]
    for c in status["conditions"]:
        assert c["observedGeneration"] == 3
        assert c["lastTransitionTime"] == NOW


def test_no_tool_config_hash_without_a_tool_config() -> None:
    assert "toolConfigHash" not in status_of(server(), Observed())


@pytest.mark.parametrize(
    ("spec", "references", "type_", "expected"),
    [
        pytest.param({}, None, "PodTemplateValid", ("True", "PodTemplateValid"), id="template-ok"),
        pytest.param(
            {"podTemplateSpec": {"spec": {"containers": [{}]}}},
            None,
            "PodTemplateValid",
            ("False", "PodTemplateInvalid"),
            id="template-bad",
        ),
        pytest.param({}, None, "ToolConfigResolved", ("True", "NoToolConfig"), id="no-tool-config"),
        pytest.param(
            {"toolConfigRef": {"name": "tools"}},
            References(tool_config=tool_config()),
            "ToolConfigResolved",
            ("True", "ToolConfigResolved"),
            id="tool-config",
        ),
        pytest.param(
            {"toolConfigRef": {"name": "tools"}},
            None,
            "ToolConfigResolved",
            ("False", "ToolConfigNotFound"),
            id="tool-config-missing",
        ),
        pytest.param(
            {"toolConfigRef": {"name": "tools"}, "podTemplateSpec": {"spec": {"containers": [{}]}}},
            References(tool_config=tool_config()),
            "ToolConfigResolved",
            ("Unknown", "NotEvaluated"),
            id="tool-config-not-evaluated",
        ),
        pytest.param({}, None, "AuthConfigValid", ("True", "AuthConfigValid"), id="no-auth"),
        pytest.param(
            {"oidcConfig": {"type": "configMap", "configMap": {"name": "idp"}}},
            References(config_maps={"idp": config_map("idp", **{"oidc.json": "{}"})}),
            "AuthConfigValid",
            ("False", "OIDCConfigInvalid"),
            id="oidc-invalid",
        ),
        pytest.param(
            {"replicas": 2}, None, "StdioReplicaCapped", ("True", "ReplicasCapped"), id="capped"
        ),
        pytest.param(
            {"replicas": 1}, None, "StdioReplicaCapped", ("False", "NotCapped"), id="not-capped"
        ),
    ],
)
def test_conditions(
    spec: dict[str, Any], references: References | None, type_: str, expected: tuple[str, str]
) -> None:
    c = condition(status_of(server(**spec), Observed(), references=references), type_)
    assert (c["status"], c["reason"]) == expected
    assert c["message"]


def test_capped_condition_says_what_was_capped() -> None:
    c = condition(status_of(server(replicas=3), Observed()), "StdioReplicaCapped")
    assert c["message"] == "A stdio MCP server has one proxy replica: replicas 3 is capped at 1"


def test_auth_condition_describes_the_auth_in_effect() -> None:
    srv = server(
        oidcConfig={"type": "kubernetes"},
        authzConfig={
            "type": "inline",
            "inline": {"policies": ["permit(principal, action, resource);"]},
        },
    )
    assert condition(status_of(srv, Observed()), "AuthConfigValid")["message"] == (
        "Clients are authenticated (kubernetes) and requests are authorised by Cedar policies (inline)"
    )


def test_transition_time_is_kept_while_status_stays_and_moves_when_it_changes() -> None:
    srv = server()
    pending = status_of(srv, Observed())
    still = status_of(
        srv, Observed(deployment=workload("Deployment", ready=0)), previous=pending, now=LATER
    )
    assert condition(still, "Ready")["lastTransitionTime"] == NOW
    assert condition(still, "Ready")["message"] != condition(pending, "Ready")["message"]
    running = status_of(
        srv,
        Observed(deployment=READY_DEPLOYMENT, statefulset=READY_STATEFULSET),
        previous=still,
        now=LATER,
    )
    assert condition(running, "Ready")["lastTransitionTime"] == LATER
    assert condition(running, "PodTemplateValid")["lastTransitionTime"] == NOW


def test_recomputing_an_unchanged_status_needs_no_patch() -> None:
    srv = server()
    observed = Observed(deployment=READY_DEPLOYMENT, statefulset=READY_STATEFULSET)
    first = status_of(srv, observed)
    again = status_of(srv, observed, previous=first, now=LATER)
    assert status_patch(first, again, fields=STATUS_FIELDS) is None


def test_status_patch_sets_changes_and_removes_dropped_fields() -> None:
    previous = {"phase": "Running", "toolConfigHash": "abc", "other": "kept"}
    desired = {"phase": "Failed"}
    assert status_patch(previous, desired, fields=STATUS_FIELDS) == {
        "phase": "Failed",
        "toolConfigHash": None,
    }


def test_an_unparsable_server_gets_a_failed_status_naming_the_problem() -> None:
    raw = raw_server()
    status = compute_invalid_status(raw, message="spec.image: bad", previous={}, now=NOW)
    assert status["phase"] == "Failed"
    assert status["message"] == "Invalid MCPServer: spec.image: bad"
    assert status["observedGeneration"] == 3
    assert condition(status, "Ready")["reason"] == "Failed"


@pytest.mark.parametrize(
    ("before", "after", "event"),
    [
        pytest.param({}, ("Pending", "m"), None, id="new-server-pending"),
        pytest.param({"phase": "Pending", "message": "a"}, ("Pending", "b"), None, id="unchanged"),
        pytest.param({"phase": "Pending"}, ("Running", "m"), ("Normal", "Running"), id="running"),
        pytest.param({}, ("Failed", "m"), ("Warning", "Failed"), id="failed-at-once"),
        pytest.param({"phase": "Running"}, ("Failed", "m"), ("Warning", "Failed"), id="failed"),
        pytest.param(
            {"phase": "Failed", "message": "a"},
            ("Failed", "b"),
            ("Warning", "Failed"),
            id="failed-anew",
        ),
        pytest.param({"phase": "Failed", "message": "a"}, ("Failed", "a"), None, id="failed-still"),
        pytest.param({"phase": "Running"}, ("Stopped", "m"), ("Normal", "Stopped"), id="stopped"),
    ],
)
def test_phase_changes_make_events(
    before: dict[str, Any], after: tuple[str, str], event: tuple[str, str] | None
) -> None:
    spec = phase_event(before, {"phase": after[0], "message": after[1]})
    assert (None if spec is None else (spec.type, spec.reason)) == event


def test_a_write_being_retried_keeps_the_server_pending_and_says_why() -> None:
    srv = server()
    plan = plan_mcpserver(srv, settings=SETTINGS, references=References())
    status = compute_status(
        srv,
        plan=plan,
        observed=Observed(deployment=READY_DEPLOYMENT, statefulset=READY_STATEFULSET),
        previous={},
        now=NOW,
        retrying="Could not apply Service mcp-time-proxy: 500 InternalError: range is full",
    )
    assert status["phase"] == "Pending"
    assert status["message"] == (
        "Could not apply Service mcp-time-proxy: 500 InternalError: range is full (retrying)"
    )
    assert condition(status, "Ready")["reason"] == "NotReady"
