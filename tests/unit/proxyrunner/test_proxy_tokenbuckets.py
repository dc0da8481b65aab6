"""The token bucket's arithmetic, property by property: never more than burst + rate·t in any
window of t, no negative level, never above capacity, and the retry-after is exact (one
microsecond earlier is still refused, at it the request fits)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from moorage_proxyrunner.policy.tokenbuckets import (
    UNITS_PER_TOKEN,
    BucketLimit,
    BucketState,
    level_at,
    take,
)

limits = st.builds(
    BucketLimit,
    requests_per_minute=st.integers(min_value=1, max_value=1_000_000),
    burst=st.integers(min_value=1, max_value=100_000),
)
small_limits = st.builds(
    BucketLimit,
    requests_per_minute=st.integers(min_value=1, max_value=600),
    burst=st.integers(min_value=1, max_value=20),
)
gaps = st.lists(st.integers(min_value=0, max_value=5_000_000), min_size=1, max_size=120)


def run(limit: BucketLimit, gaps_us: list[int]) -> list[tuple[int, bool]]:
    """Requests at the given gaps on one bucket: (time, allowed) each."""
    state: BucketState | None = None
    now, out = 0, []
    for gap in gaps_us:
        now += gap
        states, verdict = take([state], [limit], now_us=now)
        if states is not None:
            state = states[0]
            assert 0 <= state.level <= limit.capacity
        out.append((now, verdict.allowed))
    return out


@settings(max_examples=300)
@given(small_limits, gaps)
def test_no_window_allows_more_than_burst_plus_rate_times_its_length(
    limit: BucketLimit, gaps_us: list[int]
) -> None:
    allowed = [t for t, ok in run(limit, gaps_us) if ok]
    for i, start in enumerate(allowed):
        for j in range(i, len(allowed)):
            window = allowed[j] - start
            # tokens refilled in `window` microseconds: window·rpm units
            assert (j - i + 1) <= limit.burst + (
                window * limit.requests_per_minute
            ) // UNITS_PER_TOKEN


@settings(max_examples=300)
@given(small_limits, gaps)
def test_the_retry_after_is_exact(limit: BucketLimit, gaps_us: list[int]) -> None:
    state: BucketState | None = None
    now = 0
    for gap in gaps_us:
        now += gap
        states, verdict = take([state], [limit], now_us=now)
        if states is not None:
            state = states[0]
            continue
        wait = verdict.retry_after_us
        assert wait > 0
        assert verdict.blocking == 0
        assert take([state], [limit], now_us=now + wait - 1)[0] is None
        assert take([state], [limit], now_us=now + wait)[0] is not None


@given(
    limits, st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=10**12)
)
def test_a_level_is_never_negative_nor_above_capacity(
    limit: BucketLimit, at_us: int, now_us: int
) -> None:
    for level in (0, limit.capacity // 2, limit.capacity):
        value = level_at(BucketState(level, at_us), limit, now_us)
        assert 0 <= value <= limit.capacity


@given(small_limits)
def test_a_fresh_bucket_allows_exactly_burst_at_once(limit: BucketLimit) -> None:
    results = run(limit, [0] * (limit.burst + 1))
    assert [ok for _, ok in results] == [True] * limit.burst + [False]


@given(small_limits, st.integers(min_value=1, max_value=10**9))
def test_a_clock_that_steps_back_refills_nothing(limit: BucketLimit, back: int) -> None:
    states, _ = take([None], [limit], now_us=10**12)
    assert states is not None
    later, _ = take(states, [limit], now_us=10**12 - back)
    if later is not None:
        assert later[0].at_us == 10**12
        assert later[0].level == states[0].level - UNITS_PER_TOKEN


def test_a_bucket_left_alone_long_enough_is_full_so_forgetting_it_is_harmless() -> None:
    limit = BucketLimit(requests_per_minute=7, burst=3)
    empty = BucketState(0, 0)
    assert level_at(empty, limit, limit.full_after_us) == limit.capacity
    assert level_at(None, limit, 0) == limit.capacity


def test_buckets_are_taken_from_together_or_not_at_all() -> None:
    subject = BucketLimit(requests_per_minute=60, burst=10)
    tool = BucketLimit(requests_per_minute=60, burst=1)
    states, verdict = take([None, None], [subject, tool], now_us=0)
    assert verdict.allowed
    assert states is not None
    refused, verdict = take(states, [subject, tool], now_us=0)
    assert refused is None
    assert verdict.blocking == 1
    assert verdict.retry_after_us == 1_000_000  # one token a second
