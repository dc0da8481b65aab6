"""What an informer does after a watch ends: `plan_restart` and `backoff_delay` are pure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage_operator.runtime.informer import (
    Restart,
    WatchEnd,
    WatchOutcome,
    WatchPolicy,
    backoff_delay,
    plan_restart,
)

POLICY = WatchPolicy(backoff_initial=1.0, backoff_cap=30.0, backoff_jitter=1.0, short_watch=1.0)


@pytest.mark.parametrize(
    ("outcome", "failures", "expected"),
    [
        pytest.param(
            WatchOutcome(WatchEnd.GONE, "100", events=3, duration=50.0),
            0,
            Restart(relist=True, resource_version="", delay=0.0, failures=0),
            id="410-relists-at-once",
        ),
        pytest.param(
            WatchOutcome(WatchEnd.GONE, "100"),
            4,
            Restart(relist=True, resource_version="", delay=0.0, failures=0),
            id="410-after-failures-relists-at-once",
        ),
        pytest.param(
            WatchOutcome(WatchEnd.CLOSED, "", events=2, duration=300.0),
            0,
            Restart(relist=True, resource_version="", delay=0.0, failures=0),
            id="no-version-to-resume-from-relists",
        ),
        pytest.param(
            WatchOutcome(WatchEnd.CLOSED, "120", events=5, duration=300.0),
            2,
            Restart(relist=False, resource_version="120", delay=0.0, failures=0),
            id="server-timeout-resumes-from-last-version",
        ),
        pytest.param(
            WatchOutcome(WatchEnd.CLOSED, "120", events=0, duration=310.0),
            0,
            Restart(relist=False, resource_version="120", delay=0.0, failures=0),
            id="long-quiet-watch-closed-normally-resumes",
        ),
        pytest.param(
            WatchOutcome(WatchEnd.INACTIVE, "130", events=1, duration=150.0),
            3,
            Restart(relist=False, resource_version="130", delay=0.0, failures=0),
            id="silent-watch-restarts-at-once",
        ),
        pytest.param(
            WatchOutcome(WatchEnd.FAILED, "140", events=0, duration=0.1),
            0,
            Restart(relist=False, resource_version="140", delay=1.5, failures=1),
            id="failure-backs-off-then-resumes",
        ),
        pytest.param(
            WatchOutcome(WatchEnd.FAILED, "140", events=7, duration=60.0),
            3,
            Restart(relist=False, resource_version="140", delay=12.0, failures=4),
            id="repeated-failures-back-off-longer",
        ),
        pytest.param(
            WatchOutcome(WatchEnd.CLOSED, "150", events=0, duration=0.2),
            1,
            Restart(relist=False, resource_version="150", delay=3.0, failures=2),
            id="instant-empty-close-counts-as-failure",
        ),
    ],
)
def test_plan_restart(outcome: WatchOutcome, failures: int, expected: Restart) -> None:
    assert plan_restart(outcome, failures=failures, policy=POLICY, rand=0.5) == expected


@pytest.mark.parametrize(
    ("failures", "rand", "expected"),
    [
        (0, 0.0, 1.0),
        (0, 0.999, 1.999),
        (1, 0.0, 2.0),
        (4, 0.0, 16.0),
        (5, 0.0, 30.0),
        (5, 0.5, 45.0),
        (1000, 0.0, 30.0),
    ],
)
def test_backoff_delay_doubles_up_to_the_cap_then_jitters(
    failures: int, rand: float, expected: float
) -> None:
    assert backoff_delay(failures, policy=POLICY, rand=rand) == pytest.approx(expected)


@given(
    end=st.sampled_from(list(WatchEnd)),
    rv=st.text(alphabet="0123456789", max_size=6),
    events=st.integers(0, 10),
    duration=st.floats(0, 1000),
    failures=st.integers(0, 100),
    rand=st.floats(0, 1, exclude_max=True),
)
def test_plan_restart_is_always_sane(
    end: WatchEnd, rv: str, events: int, duration: float, failures: int, rand: float
) -> None:
    restart = plan_restart(
        WatchOutcome(end, rv, events=events, duration=duration),
        failures=failures,
        policy=POLICY,
        rand=rand,
    )
    assert 0 <= restart.delay <= POLICY.backoff_cap * (1 + POLICY.backoff_jitter)
    assert restart.relist == (end is WatchEnd.GONE or not rv)
    assert restart.resource_version == ("" if restart.relist else rv)
    if restart.relist:
        assert restart.delay == 0
