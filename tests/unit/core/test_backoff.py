"""The one back-off: a table of its delays and properties that hold for any parameters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage_core.backoff import Backoff


@pytest.mark.parametrize(
    ("failures", "delay"), [(0, 0.0), (1, 0.5), (2, 1.0), (3, 2.0), (7, 30.0), (50, 30.0)]
)
def test_backoff_doubles_up_to_its_maximum(failures: int, delay: float) -> None:
    assert Backoff(base=0.5, cap=30.0).delay(failures) == delay


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(-3, 0.0), (0, 0.0), (1, 10.0), (2, 20.0), (5, 160.0), (7, 600.0), (500, 600.0)],
)
def test_backoff_doubles_to_its_cap(failures: int, delay: float) -> None:
    assert Backoff(base=10.0, cap=600.0).delay(failures) == delay


@pytest.mark.parametrize(
    ("backoff", "failures", "rand", "delay"),
    [
        pytest.param(Backoff(base=1.0, cap=30.0, jitter=1.0), 1, 0.0, 1.0, id="no-stretch"),
        pytest.param(Backoff(base=1.0, cap=30.0, jitter=1.0), 1, 0.5, 1.5, id="half"),
        pytest.param(Backoff(base=1.0, cap=30.0, jitter=1.0), 6, 0.5, 45.0, id="after-cap"),
        pytest.param(Backoff(base=1.0, cap=30.0, jitter=0.1), 2, 0.5, 2.1, id="small-jitter"),
        pytest.param(Backoff(base=1.0, cap=30.0), 2, 0.9, 2.0, id="no-jitter-ignores-rand"),
        pytest.param(Backoff(base=1.0, cap=100.0, factor=3.0), 3, 0.0, 9.0, id="factor-3"),
        pytest.param(Backoff(base=2.0, cap=2.0, factor=1.0), 9, 0.0, 2.0, id="constant"),
        pytest.param(Backoff(base=0.005, cap=1000.0), 2000, 0.0, 1000.0, id="overflow"),
        pytest.param(Backoff(base=1e-300, cap=1e300), 10**9, 0.0, 1e300, id="huge-exponent"),
    ],
)
def test_backoff_stretches_the_capped_delay_by_jitter(
    backoff: Backoff, failures: int, rand: float, delay: float
) -> None:
    assert backoff.delay(failures, rand=rand) == pytest.approx(delay)


@pytest.mark.parametrize(
    ("base", "cap", "factor", "jitter"),
    [
        pytest.param(0.0, 1.0, 2.0, 0.0, id="zero-base"),
        pytest.param(-1.0, 1.0, 2.0, 0.0, id="negative-base"),
        pytest.param(2.0, 1.0, 2.0, 0.0, id="cap-below-base"),
        pytest.param(1.0, 2.0, 0.5, 0.0, id="shrinking"),
        pytest.param(1.0, 2.0, 2.0, -0.1, id="negative-jitter"),
    ],
)
def test_backoff_rejects_nonsense_parameters(
    base: float, cap: float, factor: float, jitter: float
) -> None:
    with pytest.raises(ValueError, match="back-off needs"):
        Backoff(base=base, cap=cap, factor=factor, jitter=jitter)


_backoffs = st.builds(
    lambda base, stretch, factor, jitter: Backoff(
        base=base, cap=base * stretch, factor=factor, jitter=jitter
    ),
    base=st.floats(1e-6, 1e6),
    stretch=st.floats(1.0, 1e6),
    factor=st.floats(1.0, 10.0),
    jitter=st.floats(0.0, 2.0),
)


@given(backoff=_backoffs, failures=st.integers(1, 5000))
def test_backoff_never_shrinks_as_failures_grow(backoff: Backoff, failures: int) -> None:
    assert backoff.delay(failures) <= backoff.delay(failures + 1)


@given(backoff=_backoffs, failures=st.integers(-10, 5000))
def test_backoff_stays_between_zero_and_its_cap(backoff: Backoff, failures: int) -> None:
    delay = backoff.delay(failures)
    assert 0.0 <= delay <= backoff.cap
    assert (delay == 0.0) == (failures <= 0)
    if failures == 1:
        assert delay == backoff.base


@given(
    backoff=_backoffs,
    failures=st.integers(1, 5000),
    rand=st.floats(0.0, 1.0, exclude_max=True),
)
def test_backoff_jitter_stays_within_its_bounds(
    backoff: Backoff, failures: int, rand: float
) -> None:
    plain = backoff.delay(failures)
    jittered = backoff.delay(failures, rand=rand)
    assert plain <= jittered <= plain * (1.0 + backoff.jitter)
    assert jittered <= backoff.cap * (1.0 + backoff.jitter)
