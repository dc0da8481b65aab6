"""Exponential back-off: the one rule for how long every retry loop in Moorage waits.

Pure: no I/O, no clock, no randomness of its own (a caller that wants jitter passes the random
number in). Each place that retries keeps its own start and cap, given as a `Backoff`:

| place | base → cap | jitter |
|---|---|---|
| operator work queue (per key) | 5 ms → 1000 s | none |
| operator informer (list/watch) | 0.8 s → 30 s | times 1 to 2 |
| MCPRegistry sync retries | 10 s → 10 min (settings) | none |
| proxy runner and webhook watches, workload healing, stdio re-attach | 0.5 s → 30 s | none |
| stdio backend restart | 0.5 s → 30 s | none |
| waiting for the apiserver at start-up | 0.1 s → 2 s | none |

Failures are counted from one: the wait after the first failure is `base`, and after none it is
zero, so a loop that counts failures can always ask for `delay(failures)` and sleep only when
the answer is not zero.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """`base · factor^(failures - 1)` seconds, at most `cap`, then stretched by jitter.

    Invariants (checked on construction): 0 < base ≤ cap, factor ≥ 1, jitter ≥ 0.
    """

    base: float
    """Seconds to wait after the first failure."""
    cap: float
    """Longest wait in seconds, before jitter."""
    factor: float = 2.0
    """Growth per further failure."""
    jitter: float = 0.0
    """Each wait is multiplied by 1 + jitter · rand, with `rand` in [0, 1) from the caller."""

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.cap:
            raise ValueError(f"back-off needs 0 < base <= cap, got base={self.base} cap={self.cap}")
        if self.factor < 1 or self.jitter < 0:
            raise ValueError(
                f"back-off needs factor >= 1 and jitter >= 0, got factor={self.factor} "
                f"jitter={self.jitter}"
            )

    def delay(self, failures: int, *, rand: float = 0.0) -> float:
        """Seconds to wait after `failures` consecutive failures (0 or fewer: no wait)."""
        if failures <= 0:
            return 0.0
        try:
            grown = self.base * self.factor ** (failures - 1)
        except OverflowError:
            # Only reached far past the cap: the power alone leaves the float range.
            grown = self.cap
        return float(min(self.cap, grown)) * (1.0 + self.jitter * rand)
