"""Which backend ordinal a stdio proxy replica claims, given the Leases it found and the time:
its own held one first, else the lowest free one (missing, released or expired), else none."""

from __future__ import annotations

import datetime

import pytest

from moorage_proxyrunner.workload.ordinals import (
    LEASE_DURATION,
    LeaseView,
    choose_ordinal,
    format_time,
    is_held,
    lease_spec,
    lease_view,
    parse_time,
)

NOW = datetime.datetime(2026, 12, 6, 16, 0, 0, tzinfo=datetime.UTC)
FRESH = NOW - datetime.timedelta(seconds=5)
STALE = NOW - datetime.timedelta(seconds=LEASE_DURATION)


def held(holder: str, at: datetime.datetime = FRESH) -> LeaseView:
    return LeaseView(holder=holder, renewed=at)


@pytest.mark.parametrize(
    ("leases", "ordinals", "expected"),
    [
        pytest.param({}, 3, 0, id="none-exist"),
        pytest.param({0: held("b")}, 3, 1, id="first-held-by-another"),
        pytest.param({0: held("b"), 1: held("c")}, 3, 2, id="two-held"),
        pytest.param({0: held("b"), 1: held("c"), 2: held("d")}, 3, None, id="all-held"),
        pytest.param({0: held("b"), 1: held("c", STALE)}, 3, 1, id="expired-taken-over"),
        pytest.param({0: LeaseView(holder="", renewed=FRESH)}, 2, 0, id="released"),
        pytest.param({0: LeaseView(holder="b", renewed=None)}, 2, 0, id="never-renewed"),
        pytest.param({0: held("b"), 2: held("a")}, 3, 2, id="own-held-kept-over-a-free-lower"),
        pytest.param({0: held("a", STALE)}, 2, 0, id="own-expired-retaken"),
        pytest.param({0: held("b"), 1: held("c")}, 2, None, id="fewer-ordinals"),
        pytest.param({5: held("a")}, 2, 0, id="own-beyond-the-ordinals-ignored"),
    ],
)
def test_the_replica_claims_its_own_or_the_lowest_free_ordinal(
    leases: dict[int, LeaseView | None], ordinals: int, expected: int | None
) -> None:
    assert choose_ordinal(leases, holder="a", ordinals=ordinals, now=NOW) == expected


def test_a_lease_is_held_until_its_duration_has_passed_since_renewal() -> None:
    lease = held("b", NOW)
    assert is_held(lease, now=NOW + datetime.timedelta(seconds=LEASE_DURATION - 0.001))
    assert not is_held(lease, now=NOW + datetime.timedelta(seconds=LEASE_DURATION))


def test_a_lease_object_is_read_with_its_duration_and_version() -> None:
    view = lease_view(
        {
            "metadata": {"resourceVersion": "42"},
            "spec": {
                "holderIdentity": "time-proxy-abc",
                "leaseDurationSeconds": 30,
                "renewTime": "2026-12-06T15:59:50.123456Z",
            },
        }
    )
    assert view == LeaseView(
        holder="time-proxy-abc",
        renewed=datetime.datetime(2026, 12, 6, 15, 59, 50, 123456, tzinfo=datetime.UTC),
        duration=30,
        resource_version="42",
    )
    assert is_held(view, now=NOW)


def test_a_lease_without_times_or_holder_is_free() -> None:
    view = lease_view({"metadata": {}, "spec": {"leaseDurationSeconds": 15}})
    assert view.holder == ""
    assert view.renewed is None
    assert not is_held(view, now=NOW)


def test_the_spec_written_names_the_holder_and_its_times() -> None:
    assert lease_spec(holder="a", now=NOW, acquired=True) == {
        "holderIdentity": "a",
        "leaseDurationSeconds": LEASE_DURATION,
        "renewTime": "2026-12-06T16:00:00.000000Z",
        "acquireTime": "2026-12-06T16:00:00.000000Z",
    }
    assert "acquireTime" not in lease_spec(holder="a", now=NOW, acquired=False)


@pytest.mark.parametrize("text", [None, "", "yesterday", 5])
def test_unreadable_times_are_none(text: object) -> None:
    assert parse_time(text) is None


def test_times_round_trip() -> None:
    assert parse_time(format_time(NOW)) == NOW
