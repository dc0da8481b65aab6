"""Token buckets, in integers: the refill arithmetic and the wait until a request fits.

A bucket holds up to `burst` tokens and refills at `requests_per_minute`; a request takes one
token from every bucket that applies to it, or from none when one of them is short (so that a
request refused by its tool's bucket does not use up its subject's). Levels are kept in units of
1/60,000,000 token and time in microseconds, so a bucket refills exactly `requests_per_minute`
units per microsecond and nothing is ever rounded: the wait a refused request is told
(`retry_after_us`) is the exact first microsecond at which the same request would fit. The Redis
store runs the same arithmetic in Lua (`redisbuckets.TAKE_SCRIPT`); both must agree with this
module, which the tests check property by property.

A bucket nobody has touched is full, and a bucket that has been left alone for
`full_after_us` is full again: forgetting it (an LRU eviction, a Redis key expiring) changes
nothing. Pure: no I/O, no clock (the caller passes the time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

UNITS_PER_TOKEN: Final = 60_000_000
"""One token in bucket units: a bucket refills `requests_per_minute` units per microsecond."""


def ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


@dataclass(frozen=True, slots=True)
class BucketLimit:
    """`burst` tokens at most, refilled at `requests_per_minute` (both at least 1)."""

    requests_per_minute: int
    burst: int

    @property
    def capacity(self) -> int:
        """A full bucket, in units."""
        return self.burst * UNITS_PER_TOKEN

    @property
    def full_after_us(self) -> int:
        """Microseconds an empty bucket takes to fill: after that, forgetting it is harmless."""
        return ceil_div(self.capacity, self.requests_per_minute)


@dataclass(frozen=True, slots=True)
class BucketState:
    """A bucket's `level` (units, 0 ≤ level ≤ capacity) as of `at_us` (microseconds)."""

    level: int
    at_us: int


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether the request fits; if not, after how many microseconds it would (`retry_after_us`,
    > 0) and which bucket is the last to have room (`blocking`, an index of the buckets given)."""

    allowed: bool
    retry_after_us: int = 0
    blocking: int | None = None


def level_at(state: BucketState | None, limit: BucketLimit, now_us: int) -> int:
    """The bucket's level at `now_us`: a clock that went back refills nothing."""
    if state is None:
        return limit.capacity
    elapsed = min(max(0, now_us - state.at_us), limit.full_after_us)
    return min(limit.capacity, state.level + elapsed * limit.requests_per_minute)


def take(
    states: Sequence[BucketState | None], limits: Sequence[BucketLimit], *, now_us: int
) -> tuple[list[BucketState] | None, Verdict]:
    """One token from every bucket, or from none.

    Returns the buckets' new states (None when refused: nothing changes) and the verdict.
    A state's `at_us` never goes back, so a clock that stepped back cannot refill twice.
    """
    levels = [level_at(s, lim, now_us) for s, lim in zip(states, limits, strict=True)]
    wait, blocking = 0, None
    for index, (level, limit) in enumerate(zip(levels, limits, strict=True)):
        if level < UNITS_PER_TOKEN:
            needed = ceil_div(UNITS_PER_TOKEN - level, limit.requests_per_minute)
            if needed > wait:
                wait, blocking = needed, index
    if blocking is not None:
        return None, Verdict(False, wait, blocking)
    taken = [
        BucketState(level - UNITS_PER_TOKEN, now_us if s is None else max(s.at_us, now_us))
        for s, level in zip(states, levels, strict=True)
    ]
    return taken, Verdict(True)
