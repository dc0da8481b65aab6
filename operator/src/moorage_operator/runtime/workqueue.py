"""A work queue with client-go's semantics, for asyncio.

Event handlers `add()` keys; workers `get()` a key, reconcile it, and call `done()`. The queue
keeps client-go's invariants:

- a key waiting in the queue is there once, however often it is added (the *dirty* set);
- a key is never handed to two workers at once (the *processing* set): adding a key that is being
  processed only marks it dirty, and `done()` puts it back in the queue so the change is seen;
- `add_after()` delays a key (the earliest requested time wins), `add_rate_limited()` delays it by
  its own exponential back-off (5 ms doubling up to 1000 s by default), `forget()` resets that
  back-off and `num_requeues()` reports it;
- `shutdown(drain=True)` stops accepting keys and waits for the keys being processed.

One deliberate difference from client-go: once shut down, `get()` stops handing out keys that
were queued but not started. The queue only shuts down when this replica stops reconciling, and
whoever reconciles next lists every object again, so dropping them loses nothing and lets a
departing leader hand over at once.

Time comes from an injected `Clock`, so unit tests drive delays with a fake clock. The queue does
no I/O; it is not thread-safe and must be used from one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections import deque
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

from moorage_core.backoff import Backoff
from moorage_operator.metrics import WorkQueueMetrics
from moorage_operator.runtime.clock import Clock, MonotonicClock, TimerHandle

T = TypeVar("T", bound=Hashable)
T_contra = TypeVar("T_contra", bound=Hashable, contravariant=True)


class QueueShutDown(Exception):
    """`get()` on a queue that has been shut down: the worker should exit."""


class RateLimiter(Protocol[T_contra]):
    """Decides how long a key waits before it is retried."""

    def when(self, item: T_contra) -> float:
        """Seconds to wait before retrying `item`; counts one more failure."""
        ...

    def forget(self, item: T_contra) -> None:
        """Stop tracking `item`: its next failure starts the back-off again."""
        ...

    def num_requeues(self, item: T_contra) -> int:
        """How many failures of `item` are being tracked."""
        ...


class ExponentialBackoff(Generic[T]):
    """Per-key exponential back-off: `base * 2**failures`, capped at `cap` (client-go's
    `ItemExponentialFailureRateLimiter`)."""

    def __init__(self, *, base: float = 0.005, cap: float = 1000.0) -> None:
        self.backoff = Backoff(base=base, cap=cap)
        self._failures: dict[T, int] = {}

    def when(self, item: T) -> float:
        failures = self._failures.get(item, 0) + 1
        self._failures[item] = failures
        return self.backoff.delay(failures)

    def forget(self, item: T) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: T) -> int:
        return self._failures.get(item, 0)


class WorkQueue(Generic[T]):
    """A deduplicating, delaying, rate-limited queue of keys (see the module docstring)."""

    def __init__(
        self,
        *,
        name: str = "",
        clock: Clock | None = None,
        rate_limiter: RateLimiter[T] | None = None,
        metrics: WorkQueueMetrics | None = None,
    ) -> None:
        self.name = name
        self._clock: Clock = clock or MonotonicClock()
        self._limiter: RateLimiter[T] = rate_limiter or ExponentialBackoff()
        self._metrics = metrics
        self._queue: deque[T] = deque()
        """Keys ready to be handed out, in order; each also in `_dirty`, none in `_processing`."""
        self._dirty: set[T] = set()
        """Keys that need processing: queued ones, and processing ones that changed since."""
        self._added_at: dict[T, float] = {}
        """When each dirty key was first added (for the queue-duration histogram)."""
        self._processing: dict[T, float] = {}
        """Keys handed out and not yet `done()`, with the time each was handed out."""
        self._waiting: list[tuple[float, int, T]] = []
        """Heap of (ready time, sequence, key) for delayed keys; may hold stale entries."""
        self._waiting_at: dict[T, float] = {}
        """The ready time that counts for each delayed key (its heap entry with this time)."""
        self._seq = itertools.count()
        self._timer: TimerHandle | None = None
        self._timer_at: float | None = None
        self._getters: deque[asyncio.Future[None]] = deque()
        self._drained = asyncio.Event()
        self._drained.set()
        self._shutting_down = False
        if metrics is not None:
            metrics.unfinished_work.set_function(self.unfinished_work_seconds)
            metrics.longest_running.set_function(self.longest_running_seconds)

    # -- adding -----------------------------------------------------------------------------

    def add(self, item: T) -> None:
        """Queue `item` unless it is already queued; ignored once shut down."""
        if self._shutting_down or item in self._dirty:
            return
        if self._metrics is not None:
            self._metrics.adds.inc()
        self._dirty.add(item)
        self._added_at.setdefault(item, self._clock.now())
        if item in self._processing:
            # done() will queue it again; a second worker must not see it meanwhile.
            return
        self._queue.append(item)
        self._set_depth()
        self._wake_one()

    def add_after(self, item: T, delay: float) -> None:
        """Queue `item` after `delay` seconds; an earlier pending time for it wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(item)
            return
        ready_at = self._clock.now() + delay
        pending = self._waiting_at.get(item)
        if pending is not None and pending <= ready_at:
            return
        self._waiting_at[item] = ready_at
        heapq.heappush(self._waiting, (ready_at, next(self._seq), item))
        self._arm_timer()

    def add_rate_limited(self, item: T) -> None:
        """Queue `item` after its per-key back-off; each call doubles the next delay."""
        if self._shutting_down:
            return
        if self._metrics is not None:
            self._metrics.retries.inc()
        self.add_after(item, self._limiter.when(item))

    def forget(self, item: T) -> None:
        """Reset `item`'s back-off (call after it was processed successfully)."""
        self._limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        """How many times in a row `item` was re-queued with back-off."""
        return self._limiter.num_requeues(item)

    # -- processing -------------------------------------------------------------------------

    async def get(self) -> T:
        """The next key to process; waits for one. Raises `QueueShutDown` once shut down.

        The caller owns the key until it calls `done(key)`.
        """
        while True:
            if self._shutting_down:
                raise QueueShutDown(self.name)
            if self._queue:
                break
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.cancelled():
                    # Never woken, so still listed (unless shutdown() already emptied the list).
                    with contextlib.suppress(ValueError):
                        self._getters.remove(waiter)
                else:
                    # Woken and cancelled at once: pass the wake-up on so no key is stranded.
                    self._wake_one()
                raise
        item = self._queue.popleft()
        now = self._clock.now()
        self._processing[item] = now
        self._dirty.discard(item)
        added = self._added_at.pop(item, now)
        self._drained.clear()
        if self._metrics is not None:
            self._metrics.queue_duration.observe(now - added)
        self._set_depth()
        return item

    def done(self, item: T) -> None:
        """Finish processing `item`; queue it again if it was added meanwhile."""
        started = self._processing.pop(item, None)
        if started is None:
            raise ValueError(f"done({item!r}) for a key that is not being processed")
        if self._metrics is not None:
            self._metrics.work_duration.observe(self._clock.now() - started)
        if item in self._dirty and not self._shutting_down:
            self._queue.append(item)
            self._set_depth()
            self._wake_one()
        if not self._processing:
            self._drained.set()

    # -- shutting down ----------------------------------------------------------------------

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    async def shutdown(self, *, drain: bool = False, timeout: float | None = None) -> bool:
        """Stop accepting keys and wake every waiting worker (they get `QueueShutDown`).

        Queued and delayed keys not yet handed out are dropped. With `drain`, wait (at most
        `timeout` seconds) until every key handed out is `done()`. True when nothing is left
        in flight.
        """
        self._shutting_down = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
        self._waiting.clear()
        self._waiting_at.clear()
        self._queue.clear()
        self._dirty.clear()
        self._added_at.clear()
        self._set_depth()
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        if drain and self._processing:
            try:
                async with asyncio.timeout(timeout):
                    await self._drained.wait()
            except TimeoutError:
                return False
        return not self._processing

    # -- introspection ----------------------------------------------------------------------

    def __len__(self) -> int:
        """Keys ready to be handed out (the queue's depth)."""
        return len(self._queue)

    @property
    def processing(self) -> frozenset[T]:
        """Keys handed out and not yet done."""
        return frozenset(self._processing)

    @property
    def delayed(self) -> int:
        """Keys waiting for their delay to pass."""
        return len(self._waiting_at)

    def unfinished_work_seconds(self) -> float:
        """Seconds of work in flight, summed over the keys being processed."""
        now = self._clock.now()
        return sum(now - started for started in self._processing.values())

    def longest_running_seconds(self) -> float:
        """Seconds the longest-running key has been processed."""
        if not self._processing:
            return 0.0
        return self._clock.now() - min(self._processing.values())

    # -- internals --------------------------------------------------------------------------

    def _set_depth(self) -> None:
        if self._metrics is not None:
            self._metrics.depth.set(len(self._queue))

    def _wake_one(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _arm_timer(self) -> None:
        if not self._waiting:
            return
        ready_at = self._waiting[0][0]
        if self._timer_at is not None and self._timer_at <= ready_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = ready_at
        self._timer = self._clock.call_at(ready_at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        now = self._clock.now()
        while self._waiting and self._waiting[0][0] <= now:
            ready_at, _, item = heapq.heappop(self._waiting)
            if self._waiting_at.get(item) == ready_at:
                del self._waiting_at[item]
                self.add(item)
        self._arm_timer()
