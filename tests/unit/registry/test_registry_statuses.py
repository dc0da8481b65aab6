"""MCPRegistry status: phase, syncStatus bookkeeping, apiStatus and conditions."""

from __future__ import annotations

import pytest

from moorage_api.mcpregistry import MCPRegistryPhase, MCPRegistryStatus
from moorage_operator.planning.mcpregistries.status import (
    ApiState,
    SyncFailed,
    SyncOutcome,
    SyncStarted,
    SyncSucceeded,
    api_endpoint,
    compute_status,
)

T0 = "2025-01-01T00:00:00Z"
T1 = "2025-01-01T00:01:00Z"
T2 = "2025-01-01T00:02:00Z"
OK = SyncSucceeded(hash="h1", server_count=3, message="Synced 3 servers")
ENDPOINT = "http://reg-api.ns.svc.cluster.local:8080"


def conditions(status: MCPRegistryStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def test_a_success_records_the_sync_and_observes_the_generation() -> None:
    status = compute_status(MCPRegistryStatus(), generation=3, now=T0, outcome=OK, api=None)
    assert status.phase == MCPRegistryPhase.READY
    assert status.observed_generation == 3
    sync = status.sync_status
    assert sync is not None
    assert (sync.last_sync_time, sync.last_sync_hash, sync.server_count) == (T0, "h1", 3)
    assert (sync.last_attempt, sync.attempt_count, sync.message) == (T0, 0, "Synced 3 servers")
    assert status.api_status is None
    assert conditions(status) == {"Synced": ("True", "Synced"), "Ready": ("True", "Ready")}


def test_a_failure_keeps_the_last_good_sync_and_counts_attempts() -> None:
    good = compute_status(MCPRegistryStatus(), generation=1, now=T0, outcome=OK, api=None)
    failed = compute_status(
        good, generation=2, now=T1, outcome=SyncFailed("servers.x: expected y"), api=None
    )
    again = compute_status(failed, generation=2, now=T2, outcome=SyncFailed("same"), api=None)
    assert failed.phase == MCPRegistryPhase.FAILED
    assert failed.observed_generation == 2
    sync = again.sync_status
    assert sync is not None
    assert (sync.last_sync_time, sync.last_sync_hash, sync.server_count) == (T0, "h1", 3)
    assert (sync.last_attempt, sync.attempt_count, sync.message) == (T2, 2, "same")
    assert conditions(failed) == {"Synced": ("False", "SyncFailed"), "Ready": ("False", "Failed")}
    ready = next(c for c in failed.conditions if c.type == "Ready")
    assert ready.message == "servers.x: expected y (the last good data is kept)"
    recovered = compute_status(again, generation=2, now=T2, outcome=OK, api=None)
    assert recovered.phase == MCPRegistryPhase.READY
    assert recovered.sync_status is not None
    assert recovered.sync_status.attempt_count == 0


def test_a_first_failure_has_no_data_to_keep() -> None:
    status = compute_status(
        MCPRegistryStatus(), generation=1, now=T0, outcome=SyncFailed("nope"), api=None
    )
    assert status.phase == MCPRegistryPhase.FAILED
    assert status.sync_status is not None
    assert status.sync_status.last_sync_hash is None
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert ready.message == "nope"


def test_syncing_does_not_observe_the_generation() -> None:
    good = compute_status(MCPRegistryStatus(), generation=1, now=T0, outcome=OK, api=None)
    status = compute_status(good, generation=2, now=T1, outcome=SyncStarted(), api=None)
    assert status.phase == MCPRegistryPhase.SYNCING
    assert status.observed_generation == 1
    assert conditions(status)["Synced"] == ("Unknown", "Syncing")


@pytest.mark.parametrize(
    ("outcome", "api", "phase", "api_condition"),
    [
        pytest.param(
            OK, ApiState(ENDPOINT, ready=False), "Pending", ("False", "NotReady"), id="wait"
        ),
        pytest.param(OK, ApiState(ENDPOINT, ready=True), "Ready", ("True", "Ready"), id="ready"),
        pytest.param(
            None, ApiState(ENDPOINT, ready=True), "Pending", ("True", "Ready"), id="no-data"
        ),
        pytest.param(
            SyncFailed("x"),
            ApiState(ENDPOINT, ready=True),
            "Failed",
            ("True", "Ready"),
            id="failed",
        ),
    ],
)
def test_api_state_shapes_phase_and_conditions(
    outcome: SyncOutcome | None, api: ApiState, phase: str, api_condition: tuple[str, str]
) -> None:
    status = compute_status(MCPRegistryStatus(), generation=1, now=T0, outcome=outcome, api=api)
    assert status.phase == phase
    assert status.api_status is not None
    assert status.api_status.endpoint == ENDPOINT
    assert status.api_status.ready is api.ready
    assert conditions(status)["APIReady"] == api_condition


def test_nothing_new_computes_the_same_status() -> None:
    api = ApiState(ENDPOINT, ready=True)
    first = compute_status(MCPRegistryStatus(), generation=1, now=T0, outcome=OK, api=api)
    second = compute_status(first, generation=1, now=T2, outcome=None, api=api)
    assert second == first


def test_transition_times_change_only_with_the_condition_status() -> None:
    api_down = ApiState(ENDPOINT, ready=False)
    first = compute_status(MCPRegistryStatus(), generation=1, now=T0, outcome=OK, api=api_down)
    later = compute_status(first, generation=1, now=T2, outcome=None, api=ApiState(ENDPOINT, True))
    times = {c.type: c.last_transition_time for c in later.conditions}
    assert times == {"Synced": T0, "APIReady": T2, "Ready": T2}


def test_api_endpoint() -> None:
    assert api_endpoint("reg", namespace="ns") == ENDPOINT
