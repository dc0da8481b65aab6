"""The work queue keeps client-go's invariants; time is a fake clock, so nothing sleeps."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry
from runtime_fakes import FakeClock

from moorage_operator.metrics import OperatorMetrics
from moorage_operator.runtime.workqueue import ExponentialBackoff, QueueShutDown, WorkQueue


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(clock: FakeClock) -> WorkQueue[str]:
    return WorkQueue(name="test", clock=clock)


async def take_ready(queue: WorkQueue[str]) -> list[str]:
    """Every key ready now, in order (they stay in processing until done())."""
    keys: list[str] = []
    while len(queue):
        keys.append(await queue.get())
    return keys


async def test_a_key_added_many_times_is_queued_once(queue: WorkQueue[str]) -> None:
    for key in ["a", "b", "a", "a", "b", "c"]:
        queue.add(key)
    assert len(queue) == 3
    assert [await queue.get() for _ in range(3)] == ["a", "b", "c"]


async def test_a_key_being_processed_is_not_handed_to_a_second_worker(
    queue: WorkQueue[str],
) -> None:
    queue.add("a")
    first = await queue.get()
    queue.add("a")  # changed while being processed
    assert len(queue) == 0, "the key must wait until the first worker is done"
    second_worker = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not second_worker.done()
    queue.done(first)
    assert await second_worker == "a"
    queue.done("a")


async def test_done_requeues_a_key_that_was_added_while_processing(queue: WorkQueue[str]) -> None:
    queue.add("a")
    key = await queue.get()
    queue.add("a")
    queue.add("a")
    queue.done(key)
    assert len(queue) == 1
    assert await queue.get() == "a"
    queue.done("a")
    assert len(queue) == 0


async def test_done_without_a_new_add_does_not_requeue(queue: WorkQueue[str]) -> None:
    queue.add("a")
    queue.done(await queue.get())
    assert len(queue) == 0
    assert queue.processing == frozenset()


async def test_done_for_a_key_not_being_processed_is_an_error(queue: WorkQueue[str]) -> None:
    with pytest.raises(ValueError, match="not being processed"):
        queue.done("never-handed-out")


async def test_add_after_releases_keys_in_order_of_their_ready_time(
    queue: WorkQueue[str], clock: FakeClock
) -> None:
    queue.add_after("late", 3.0)
    queue.add_after("early", 1.0)
    queue.add_after("middle", 2.0)
    assert len(queue) == 0
    assert queue.delayed == 3
    clock.advance(0.999)
    assert len(queue) == 0
    clock.advance(0.001)
    assert await take_ready(queue) == ["early"]
    clock.advance(5.0)
    assert await take_ready(queue) == ["middle", "late"]


async def test_add_after_keeps_the_earliest_time_for_a_key(
    queue: WorkQueue[str], clock: FakeClock
) -> None:
    queue.add_after("a", 10.0)
    queue.add_after("a", 2.0)
    queue.add_after("a", 5.0)
    clock.advance(2.0)
    assert await take_ready(queue) == ["a"]
    queue.done("a")
    clock.advance(20.0)
    assert len(queue) == 0, "the later requests were merged into the earliest"


async def test_add_after_with_no_delay_adds_at_once(queue: WorkQueue[str]) -> None:
    queue.add_after("a", 0)
    assert await take_ready(queue) == ["a"]


async def test_a_delayed_key_wakes_a_waiting_worker(
    queue: WorkQueue[str], clock: FakeClock
) -> None:
    worker = asyncio.create_task(queue.get())
    queue.add_after("a", 1.0)
    await asyncio.sleep(0)
    assert not worker.done()
    clock.advance(1.0)
    assert await worker == "a"
    queue.done("a")


@pytest.mark.parametrize(
    ("failures", "expected"),
    [(1, 0.005), (2, 0.01), (3, 0.02), (4, 0.04), (11, 5.12), (19, 1000.0), (200, 1000.0)],
    ids=lambda v: str(v),
)
def test_backoff_doubles_from_5ms_up_to_1000s(failures: int, expected: float) -> None:
    limiter: ExponentialBackoff[str] = ExponentialBackoff()
    delays = [limiter.when("a") for _ in range(failures)]
    assert delays[-1] == pytest.approx(expected)
    assert limiter.num_requeues("a") == failures


def test_backoff_is_configurable_and_per_key() -> None:
    limiter: ExponentialBackoff[str] = ExponentialBackoff(base=1.0, cap=3.0)
    assert [limiter.when("a") for _ in range(4)] == [1.0, 2.0, 3.0, 3.0]
    assert limiter.when("b") == 1.0


@pytest.mark.parametrize(("base", "cap"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_backoff_rejects_nonsense_bounds(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="base"):
        ExponentialBackoff(base=base, cap=cap)


async def test_add_rate_limited_grows_the_delay_and_forget_resets_it(
    queue: WorkQueue[str], clock: FakeClock
) -> None:
    for expected_delay in (0.005, 0.01, 0.02):
        queue.add_rate_limited("a")
        clock.advance(expected_delay - 0.0001)
        assert len(queue) == 0, f"released before {expected_delay}s"
        clock.advance(0.0001)
        assert await take_ready(queue) == ["a"]
        queue.done("a")
    assert queue.num_requeues("a") == 3
    queue.forget("a")
    assert queue.num_requeues("a") == 0
    queue.add_rate_limited("a")
    clock.advance(0.005)
    assert await take_ready(queue) == ["a"], "after forget() the back-off starts again at 5 ms"
    queue.done("a")


async def test_shutdown_wakes_waiting_workers(queue: WorkQueue[str]) -> None:
    workers = [asyncio.create_task(queue.get()) for _ in range(3)]
    await asyncio.sleep(0)
    assert await queue.shutdown() is True
    for worker in workers:
        with pytest.raises(QueueShutDown):
            await worker


async def test_shutdown_ignores_new_keys_and_drops_pending_ones(
    queue: WorkQueue[str], clock: FakeClock
) -> None:
    queue.add("queued")
    queue.add_after("delayed", 1.0)
    await queue.shutdown()
    queue.add("late")
    queue.add_rate_limited("late")
    clock.advance(10.0)
    assert len(queue) == 0
    assert queue.delayed == 0
    with pytest.raises(QueueShutDown):
        await queue.get()


async def test_shutdown_with_drain_waits_for_work_in_flight(queue: WorkQueue[str]) -> None:
    queue.add("a")
    queue.add("b")
    a = await queue.get()
    queue.add("a")  # dirty while processing: must not come back after shutdown
    shutdown = asyncio.create_task(queue.shutdown(drain=True))
    await asyncio.sleep(0)
    assert not shutdown.done(), "drain must wait for the key in flight"
    queue.done(a)
    assert await shutdown is True
    assert len(queue) == 0
    with pytest.raises(QueueShutDown):
        await queue.get()


async def test_shutdown_with_drain_gives_up_after_its_timeout(queue: WorkQueue[str]) -> None:
    queue.add("stuck")
    await queue.get()
    assert await queue.shutdown(drain=True, timeout=0.01) is False
    queue.done("stuck")


async def test_a_cancelled_worker_does_not_strand_a_key(queue: WorkQueue[str]) -> None:
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.add("a")  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs
    assert await second == "a"
    with pytest.raises(asyncio.CancelledError):
        await first
    queue.done("a")


async def test_metrics_follow_the_queue(clock: FakeClock) -> None:
    registry = CollectorRegistry()
    queue: WorkQueue[str] = WorkQueue(
        name="q", clock=clock, metrics=OperatorMetrics(registry).workqueue("q")
    )

    def value(metric: str) -> float:
        sample = registry.get_sample_value(metric, {"name": "q"})
        assert sample is not None, metric
        return sample

    queue.add("a")
    queue.add("a")
    queue.add("b")
    assert value("moorage_workqueue_adds_total") == 2
    assert value("moorage_workqueue_depth") == 2
    clock.advance(2.0)
    key = await queue.get()
    assert value("moorage_workqueue_queue_duration_seconds_sum") == pytest.approx(2.0)
    clock.advance(3.0)
    assert value("moorage_workqueue_unfinished_work_seconds") == pytest.approx(3.0)
    assert value("moorage_workqueue_longest_running_processor_seconds") == pytest.approx(3.0)
    queue.done(key)
    assert value("moorage_workqueue_work_duration_seconds_sum") == pytest.approx(3.0)
    assert value("moorage_workqueue_unfinished_work_seconds") == 0
    queue.add_rate_limited("c")
    assert value("moorage_workqueue_retries_total") == 1
