"""When a registry syncs: the reasons in order, back-off, interval with jitter, timestamps."""

from __future__ import annotations

from dataclasses import replace

import pytest

from moorage_core.backoff import Backoff
from moorage_operator.planning.mcpregistries.scheduling import (
    JITTER,
    SyncPlan,
    SyncReason,
    SyncState,
    format_timestamp,
    jitter_for,
    parse_timestamp,
    plan_sync,
)

NOW = 1_000_000.0
BACKOFF = Backoff(base=10.0, cap=600.0)
SETTLED = SyncState(
    generation=2,
    observed_generation=2,
    requested=False,
    automatic=True,
    interval=3600.0,
    last_attempt=NOW - 100.0,
    failures=0,
    has_data=True,
)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        pytest.param(SETTLED, SyncPlan(None, requeue_after=3500.0), id="settled-waits-interval"),
        pytest.param(
            replace(SETTLED, last_attempt=NOW - 3600.0), SyncPlan(SyncReason.INTERVAL), id="due"
        ),
        pytest.param(
            replace(SETTLED, last_attempt=NOW - 3600.0, jitter=0.05),
            SyncPlan(None, requeue_after=180.0),
            id="jitter-stretches-interval",
        ),
        pytest.param(replace(SETTLED, requested=True), SyncPlan(SyncReason.REQUESTED), id="asked"),
        pytest.param(
            replace(SETTLED, requested=True, observed_generation=1),
            SyncPlan(SyncReason.REQUESTED),
            id="request-first",
        ),
        pytest.param(
            replace(SETTLED, observed_generation=1),
            SyncPlan(SyncReason.SPEC_CHANGED),
            id="spec-changed",
        ),
        pytest.param(
            replace(SETTLED, observed_generation=None, last_attempt=None, has_data=False),
            SyncPlan(SyncReason.SPEC_CHANGED),
            id="first-sync",
        ),
        pytest.param(
            replace(SETTLED, source_changed=True),
            SyncPlan(SyncReason.SOURCE_CHANGED),
            id="source-changed",
        ),
        pytest.param(
            replace(SETTLED, has_data=False), SyncPlan(SyncReason.MISSING_DATA), id="data-gone"
        ),
        pytest.param(
            replace(SETTLED, failures=1, last_attempt=NOW - 4.0),
            SyncPlan(None, requeue_after=6.0),
            id="retry-waits-backoff",
        ),
        pytest.param(
            replace(SETTLED, failures=1, last_attempt=NOW - 10.0),
            SyncPlan(SyncReason.RETRY),
            id="retry-due",
        ),
        pytest.param(
            replace(SETTLED, failures=3, last_attempt=NOW - 30.0),
            SyncPlan(None, requeue_after=10.0),
            id="backoff-doubles",
        ),
        pytest.param(
            replace(SETTLED, failures=30, last_attempt=NOW, interval=60.0),
            SyncPlan(None, requeue_after=60.0),
            id="backoff-not-beyond-interval",
        ),
        pytest.param(
            replace(SETTLED, failures=30, last_attempt=NOW, automatic=False),
            SyncPlan(None, requeue_after=600.0),
            id="manual-still-retries-up-to-cap",
        ),
        pytest.param(
            replace(SETTLED, failures=2, retry_helps=False, last_attempt=NOW - 9999.0),
            SyncPlan(None),
            id="watched-source-not-retried",
        ),
        pytest.param(
            replace(SETTLED, failures=2, retry_helps=False, source_changed=True),
            SyncPlan(SyncReason.SOURCE_CHANGED),
            id="watched-source-changed-after-failure",
        ),
        pytest.param(replace(SETTLED, automatic=False), SyncPlan(None), id="manual-only"),
        pytest.param(
            replace(SETTLED, automatic=False, last_attempt=NOW - 99999.0),
            SyncPlan(None),
            id="manual-only-never-due",
        ),
    ],
)
def test_plan_sync(state: SyncState, expected: SyncPlan) -> None:
    plan = plan_sync(state, now=NOW, backoff=BACKOFF)
    assert plan.reason == expected.reason
    if expected.requeue_after is None:
        assert plan.requeue_after is None
    else:
        assert plan.requeue_after == pytest.approx(expected.requeue_after)
    assert plan.sync is (expected.reason is not None)


def test_jitter_is_stable_per_uid_and_bounded() -> None:
    values = [jitter_for(f"uid-{i}") for i in range(200)]
    assert all(0.0 <= v < JITTER for v in values)
    assert jitter_for("uid-7") == values[7]
    assert len(set(values)) > 150


def test_timestamps_round_trip_in_kubernetes_form() -> None:
    text = format_timestamp(1_700_000_000.7)
    assert text == "2023-11-14T22:13:20Z"
    assert parse_timestamp(text) == 1_700_000_000.0
    assert parse_timestamp("2023-11-14T22:13:20+00:00") == 1_700_000_000.0
    assert parse_timestamp(None) is None
    assert parse_timestamp("") is None
    assert parse_timestamp("yesterday") is None
