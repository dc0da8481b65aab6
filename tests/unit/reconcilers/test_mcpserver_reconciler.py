"""The MCPServer reconciler against a fake kube client: what it writes, in which order, and
what it does with each answer the apiserver may give (spec §3.2: no write when nothing changed)."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from reconciler_fakes import NAMESPACE, RecordingKube, cache, merged_status, recorder, with_status

from moorage_core.errors import BadRequest, Conflict, Forbidden, Invalid, KubeError, NotFound
from moorage_core.kube import (
    CONFIGMAPS,
    CORE_EVENTS,
    MCPEXTERNALAUTHCONFIGS,
    MCPGROUPS,
    MCPSERVERS,
    MCPTOOLCONFIGS,
    PODS,
    STATEFULSETS,
    JsonObject,
)
from moorage_operator.reconcilers.mcpservers import CHILD_KINDS, MCPServerReconciler, ServerCaches
from moorage_operator.reconcilers.pending import PendingWrites
from moorage_operator.runtime.controller import Request, Result, TerminalError

NAME = "time"
UID = "0b7a3c1e-5f0d-4c1b-9b8e-1d2f3a4b5c6d"
REQUEST = Request(NAMESPACE, NAME)
FIRST_WAVE = {"ServiceAccount", "Role", "ConfigMap"}
SECOND_WAVE = {"RoleBinding", "Deployment", "Service"}


@dataclass(frozen=True, slots=True)
class Settings:
    """What the planners read from the operator's settings."""

    proxyrunner_image: str = "registry.example/moorage/proxyrunner:9.9.9"
    cluster_domain: str = "cluster.local"


def raw_server(**spec: Any) -> JsonObject:
    """A stored MCPServer; `spec` in wire (camelCase) names."""
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPServer",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "uid": UID,
            "generation": 3,
            "resourceVersion": "100",
        },
        "spec": {"image": "ghcr.io/example/mcp-time:1.2.0", **spec},
    }


def reconciler(
    kube: RecordingKube,
    server: JsonObject | None,
    *,
    children: Iterable[JsonObject] = (),
    pending: PendingWrites | None = None,
) -> MCPServerReconciler:
    """A reconciler whose caches hold `server` and our `children`, writing through `kube`."""
    owned = {kind: cache(kind) for kind in CHILD_KINDS.values()}
    for child in children:
        owned[CHILD_KINDS[(child["apiVersion"], child["kind"])]].upsert(child)
    return MCPServerReconciler(
        kube,
        settings=Settings(),
        caches=ServerCaches(
            servers=cache(MCPSERVERS, [server] if server else []),
            tool_configs=cache(MCPTOOLCONFIGS),
            config_maps=cache(CONFIGMAPS),
            owned=owned,
            statefulsets=cache(STATEFULSETS),
            pods=cache(PODS),
            refusals=cache(CORE_EVENTS),
            external_auth_configs=cache(MCPEXTERNALAUTHCONFIGS),
            groups=cache(MCPGROUPS),
        ),
        recorder=recorder(kube),
        pending=PendingWrites() if pending is None else pending,
        clock=lambda: datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
    )


def status_patches(kube: RecordingKube) -> list[Any]:
    return [c.body["status"] for c in kube.writes("patch", kind="MCPServer")]


def applied_kinds(kube: RecordingKube) -> list[str]:
    return [c.kind for c in kube.writes("apply")]


async def test_a_server_gone_from_the_cache_costs_no_request() -> None:
    kube = RecordingKube()

    assert await reconciler(kube, None).reconcile(REQUEST) == Result()
    assert kube.calls == []


async def test_a_new_server_applies_its_children_in_two_waves_then_writes_its_status() -> None:
    kube = RecordingKube()

    assert await reconciler(kube, raw_server()).reconcile(REQUEST) == Result()

    kinds = applied_kinds(kube)
    assert set(kinds) == FIRST_WAVE | SECOND_WAVE
    last_of_first = max(i for i, kind in enumerate(kinds) if kind in FIRST_WAVE)
    assert all(kind in SECOND_WAVE for kind in kinds[last_of_first + 1 :])
    assert all(c.namespace == NAMESPACE for c in kube.writes("apply"))
    (status,) = status_patches(kube)
    assert status["phase"] == "Pending"
    assert kube.writes("patch", kind="MCPServer")[0].subresource == "status"
    assert kube.events() == [], "the first Pending of a new server is no news"


async def test_a_reconcile_before_the_cache_caught_up_repeats_no_apply() -> None:
    kube = RecordingKube()
    subject = reconciler(kube, raw_server())
    await subject.reconcile(REQUEST)
    applied = len(kube.writes("apply"))

    assert await subject.reconcile(REQUEST) == Result()
    assert len(kube.writes("apply")) == applied


async def test_a_reconcile_before_the_cached_server_shows_its_status_writes_nothing() -> None:
    kube = RecordingKube()
    pending = PendingWrites()
    await reconciler(kube, raw_server(), pending=pending).reconcile(REQUEST)
    children = [c.body for c in kube.writes("apply")]

    again = RecordingKube()
    subject = reconciler(again, raw_server(), children=children, pending=pending)
    assert await subject.reconcile(REQUEST) == Result()
    assert again.writes() == []


async def test_a_reconcile_with_the_cache_holding_what_was_written_writes_nothing() -> None:
    kube = RecordingKube()
    await reconciler(kube, raw_server()).reconcile(REQUEST)
    children = [c.body for c in kube.writes("apply")]
    server = with_status(raw_server(), merged_status({}, kube.writes("patch", kind="MCPServer")))

    again = RecordingKube()
    assert await reconciler(again, server, children=children).reconcile(REQUEST) == Result()
    assert again.writes() == []


@pytest.mark.parametrize(
    ("kind", "error", "raised", "phase", "second_wave_tried"),
    [
        pytest.param(
            "Deployment",
            Conflict("apply conflict", status=409),
            Conflict,
            "Pending",
            True,
            id="conflict-retried",
        ),
        pytest.param(
            "ServiceAccount",
            Forbidden("denied", status=403),
            Forbidden,
            "Pending",
            False,
            id="first-wave-refused-stops-the-second",
        ),
        pytest.param(
            "Deployment",
            Invalid("bad pod", status=422),
            TerminalError,
            "Failed",
            True,
            id="invalid-is-terminal",
        ),
        pytest.param(
            "Service",
            BadRequest("malformed", status=400),
            TerminalError,
            "Failed",
            True,
            id="bad-request-is-terminal",
        ),
    ],
)
async def test_a_refused_apply_is_reported_in_status_and_event_then_raised(
    kind: str,
    error: KubeError,
    raised: type[Exception],
    phase: str,
    second_wave_tried: bool,
) -> None:
    kube = RecordingKube()
    kube.fail("apply", kind, error)

    with pytest.raises(raised):
        await reconciler(kube, raw_server()).reconcile(REQUEST)

    assert bool(set(applied_kinds(kube)) & SECOND_WAVE) is second_wave_tried
    (status,) = status_patches(kube)
    assert status["phase"] == phase
    assert f"Could not apply {kind}" in str(status)
    reasons = [event["reason"] for event in kube.events()]
    assert reasons[0] == "ApplyFailed"
    assert all(event["type"] == "Warning" for event in kube.events())


async def test_a_refused_apply_retried_with_nothing_new_writes_no_status_again() -> None:
    kube = RecordingKube()
    subject = reconciler(kube, raw_server())
    kube.fail("apply", "Deployment", Conflict("apply conflict", status=409))
    with pytest.raises(Conflict):
        await subject.reconcile(REQUEST)
    kube.fail("apply", "Deployment", Conflict("apply conflict", status=409))
    first = len(status_patches(kube))

    with pytest.raises(Conflict):
        await subject.reconcile(REQUEST)
    assert len(status_patches(kube)) == first


async def test_a_stale_child_already_deleted_is_not_an_error() -> None:
    kube = RecordingKube()
    await reconciler(kube, raw_server()).reconcile(REQUEST)
    children = [c.body for c in kube.writes("apply")]
    for child in children:
        child["metadata"]["uid"] = f"uid-{child['kind']}-{child['metadata']['name']}"
    server = raw_server(serviceAccount="custom")

    again = RecordingKube()
    again.fail("delete", "ServiceAccount", NotFound("gone", status=404))
    assert await reconciler(again, server, children=children).reconcile(REQUEST) == Result()

    (deleted,) = again.writes("delete")
    assert (deleted.kind, deleted.name) == ("ServiceAccount", f"{NAME}-sa")
    assert deleted.body == {"uid": f"uid-ServiceAccount-{NAME}-sa"}


async def test_a_server_that_does_not_parse_fails_terminally_and_applies_nothing() -> None:
    kube = RecordingKube()

    with pytest.raises(TerminalError, match="invalid MCPServer"):
        await reconciler(kube, raw_server(port="not-a-port")).reconcile(REQUEST)

    assert applied_kinds(kube) == []
    (status,) = status_patches(kube)
    assert status["phase"] == "Failed"


async def test_a_server_being_deleted_only_says_terminating() -> None:
    kube = RecordingKube()
    server = raw_server()
    server["metadata"]["deletionTimestamp"] = "2026-01-02T03:00:00Z"

    assert await reconciler(kube, server).reconcile(REQUEST) == Result()

    assert applied_kinds(kube) == []
    (status,) = status_patches(kube)
    assert status["phase"] == "Terminating"


async def test_a_missing_tool_config_fails_terminally_says_which_and_applies_nothing() -> None:
    kube = RecordingKube()

    with pytest.raises(TerminalError, match="absent"):
        await reconciler(kube, raw_server(toolConfigRef={"name": "absent"})).reconcile(REQUEST)

    assert applied_kinds(kube) == []
    (status,) = status_patches(kube)
    assert status["phase"] == "Failed"
    assert "absent" in status["message"]
    assert [(e["type"], e["reason"]) for e in kube.events()] == [("Warning", "Failed")]


async def test_a_status_write_for_a_server_deleted_meanwhile_is_not_an_error() -> None:
    kube = RecordingKube()
    kube.fail("patch", "MCPServer", NotFound("gone", status=404), subresource="status")
    subject = reconciler(kube, raw_server())

    assert await subject.reconcile(REQUEST) == Result()
    assert kube.events() == []
    assert subject.pending.recall(MCPSERVERS, namespace=NAMESPACE, name=NAME) is None
