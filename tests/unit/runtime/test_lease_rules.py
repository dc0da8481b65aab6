"""Leader election's pure rules: who may take a Lease, and what is written."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from moorage_operator.runtime.leaderelection import (
    LeaderElectionConfig,
    can_acquire,
    format_micro_time,
    next_lease_spec,
    released_lease_spec,
)

NOW = datetime.datetime(2025, 5, 1, 12, 0, 0, 123456, tzinfo=datetime.UTC)
STAMP = "2025-05-01T12:00:00.123456Z"


@pytest.mark.parametrize(
    ("spec", "observed_at", "now", "expected"),
    [
        ({}, 0.0, 0.0, True),
        ({"holderIdentity": ""}, 100.0, 100.0, True),
        ({"holderIdentity": "me", "leaseDurationSeconds": 15}, 100.0, 100.0, True),
        ({"holderIdentity": "other", "leaseDurationSeconds": 15}, 100.0, 114.9, False),
        ({"holderIdentity": "other", "leaseDurationSeconds": 15}, 100.0, 115.0, True),
        ({"holderIdentity": "other", "leaseDurationSeconds": 1}, 100.0, 101.0, True),
    ],
    ids=[
        "no-record",
        "released",
        "ours",
        "others-fresh",
        "others-expired",
        "others-released-style",
    ],
)
def test_can_acquire(spec: dict[str, Any], observed_at: float, now: float, expected: bool) -> None:
    assert can_acquire(spec, identity="me", observed_at=observed_at, now=now) is expected


@pytest.mark.parametrize(
    ("now", "expected"), [(100.0, False), (114.9, False), (115.0, True)], ids=str
)
def test_a_record_in_our_name_that_this_process_did_not_write_waits_out_its_duration(
    now: float, expected: bool
) -> None:
    # A container restarted in the same pod: the standby, which saw the record first, leads.
    spec = {"holderIdentity": "me", "leaseDurationSeconds": 15}
    assert can_acquire(spec, identity="me", observed_at=100.0, now=now, took_it=False) is expected


def test_taking_a_lease_from_another_holder_counts_a_transition() -> None:
    spec = {"holderIdentity": "other", "acquireTime": "old", "leaseTransitions": 3}
    assert next_lease_spec(spec, identity="me", lease_duration=15, now=NOW) == {
        "holderIdentity": "me",
        "leaseDurationSeconds": 15,
        "acquireTime": STAMP,
        "renewTime": STAMP,
        "leaseTransitions": 4,
    }


def test_renewing_keeps_the_acquire_time_and_transitions() -> None:
    spec = {"holderIdentity": "me", "acquireTime": "then", "leaseTransitions": 3}
    renewed = next_lease_spec(spec, identity="me", lease_duration=15, now=NOW)
    assert (renewed["acquireTime"], renewed["renewTime"], renewed["leaseTransitions"]) == (
        "then",
        STAMP,
        3,
    )


def test_releasing_clears_the_holder_and_shortens_the_lease() -> None:
    spec = {"holderIdentity": "me", "leaseTransitions": 2, "leaseDurationSeconds": 15}
    assert released_lease_spec(spec, now=NOW) == {
        "holderIdentity": "",
        "leaseDurationSeconds": 1,
        "acquireTime": STAMP,
        "renewTime": STAMP,
        "leaseTransitions": 2,
    }


def test_micro_time_is_utc_with_microseconds() -> None:
    local = NOW.astimezone(datetime.timezone(datetime.timedelta(hours=2)))
    assert format_micro_time(local) == STAMP


def test_the_defaults_are_client_gos() -> None:
    cfg = LeaderElectionConfig(namespace="moorage-system", identity="pod")
    assert (cfg.name, cfg.lease_duration, cfg.renew_deadline, cfg.retry_period) == (
        "moorage-operator",
        15.0,
        10.0,
        2.0,
    )


@pytest.mark.parametrize(
    ("duration", "deadline", "retry"), [(10, 10, 2), (15, 10, 10), (15, 10, 0)]
)
def test_inconsistent_timing_is_refused(duration: float, deadline: float, retry: float) -> None:
    with pytest.raises(ValueError, match="retry_period < renew_deadline < lease_duration"):
        LeaderElectionConfig(
            namespace="n",
            identity="i",
            lease_duration=duration,
            renew_deadline=deadline,
            retry_period=retry,
        )
