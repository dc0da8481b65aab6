"""Time as the runtime sees it: a monotonic `now()` and one-shot timers.

The work queue and the event recorder take a `Clock` so that unit tests can drive time by hand
(a fake clock whose `advance()` fires due timers) instead of sleeping. Production code uses
`MonotonicClock`, which schedules timers on the running asyncio loop. No I/O here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class TimerHandle(Protocol):
    """A scheduled callback that can be cancelled before it fires."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Monotonic seconds and timers on the same time base."""

    def now(self) -> float:
        """Seconds on a monotonic time base (only differences are meaningful)."""
        ...

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        """Run `callback` once `now()` reaches `when` (at once if it already has)."""
        ...


class MonotonicClock:
    """`time.monotonic()` with timers on the running asyncio loop."""

    def now(self) -> float:
        return time.monotonic()

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        loop = asyncio.get_running_loop()
        return loop.call_later(max(0.0, when - self.now()), callback)
