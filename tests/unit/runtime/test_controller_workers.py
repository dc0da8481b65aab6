"""Controllers: events become keys, keys become reconciles; results decide retries."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from runtime_fakes import FakeKube, obj
from testkit.waiting import eventually

from moorage_core.kube import CONFIGMAPS, DEPLOYMENTS, MCPSERVERS, ListResult
from moorage_operator.metrics import OperatorMetrics
from moorage_operator.runtime.controller import (
    Controller,
    Request,
    Result,
    TerminalError,
    owner_requests,
)
from moorage_operator.runtime.informer import Informer, WatchPolicy

FAST = WatchPolicy(backoff_initial=0.001, backoff_cap=0.01)


class ScriptedReconciler:
    """Counts reconciles per key and answers with what `script` says."""

    def __init__(self, script: Callable[[Request, int], Result] | None = None) -> None:
        self.script = script or (lambda _r, _n: Result())
        self.calls: Counter[Request] = Counter()
        self.in_flight: set[Request] = set()
        self.overlaps = 0
        self.gate: asyncio.Event | None = None

    async def reconcile(self, request: Request) -> Result:
        if request in self.in_flight:
            self.overlaps += 1
        self.in_flight.add(request)
        try:
            self.calls[request] += 1
            if self.gate is not None:
                await self.gate.wait()
            else:
                await asyncio.sleep(0)
            return self.script(request, self.calls[request])
        finally:
            self.in_flight.discard(request)


def informer_with(*objects: dict[str, Any], kind: Any = CONFIGMAPS) -> tuple[Informer, FakeKube]:
    kube = FakeKube()
    kube.script_list(None, ListResult(list(objects), "100"))
    return Informer(kube, kind, policy=FAST), kube  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(controller: Controller, *informers: Informer) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(i.run()) for i in informers]
    tasks.append(asyncio.create_task(controller.run(drain_timeout=1.0)))
    try:
        yield
    finally:
        for task in reversed(tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, {"controller": "c", **labels}) or 0.0


async def test_every_cached_object_is_reconciled_and_success_is_counted() -> None:
    informer, _ = informer_with(obj("a", "1"), obj("b", "2"))
    registry = CollectorRegistry()
    reconciler = ScriptedReconciler()
    controller = Controller(
        "c", reconciler, primary=informer, concurrency=2, metrics=OperatorMetrics(registry)
    )
    async with running(controller, informer):
        await eventually(lambda: len(reconciler.calls) == 2)
        await eventually(
            lambda: sample(registry, "moorage_controller_reconcile_total", result="success") == 2
        )
    assert set(reconciler.calls) == {Request("ns", "a"), Request("ns", "b")}
    assert sample(registry, "moorage_controller_max_concurrent_reconciles") == 2


async def test_a_failing_reconcile_is_retried_with_backoff_until_it_succeeds() -> None:
    informer, _ = informer_with(obj("a", "1"))
    registry = CollectorRegistry()

    def script(_: Request, attempt: int) -> Result:
        if attempt < 4:
            raise RuntimeError(f"attempt {attempt} failed")
        return Result()

    reconciler = ScriptedReconciler(script)
    controller = Controller(
        "c", reconciler, primary=informer, metrics=OperatorMetrics(registry), backoff_base=0.001
    )
    async with running(controller, informer):
        await eventually(
            lambda: sample(registry, "moorage_controller_reconcile_total", result="success") == 1
        )
    assert reconciler.calls[Request("ns", "a")] == 4
    assert sample(registry, "moorage_controller_reconcile_errors_total") == 3
    assert sample(registry, "moorage_controller_reconcile_total", result="error") == 3
    assert controller.queue.num_requeues(Request("ns", "a")) == 0, "success forgets the back-off"


async def test_a_terminal_error_is_counted_and_not_retried() -> None:
    informer, kube = informer_with(obj("a", "1"))
    registry = CollectorRegistry()

    def script(_: Request, attempt: int) -> Result:
        raise TerminalError("spec.image is not an image reference")

    reconciler = ScriptedReconciler(script)
    controller = Controller(
        "c", reconciler, primary=informer, metrics=OperatorMetrics(registry), backoff_base=0.001
    )
    async with running(controller, informer):
        await eventually(
            lambda: sample(registry, "moorage_controller_terminal_reconcile_errors_total") == 1
        )
        assert controller.queue.delayed == 0
        assert len(controller.queue) == 0
        # The next change of the object is reconciled again.
        watch = await kube.next_watch(1)
        watch.send("MODIFIED", obj("a", "2"))
        await eventually(lambda: reconciler.calls[Request("ns", "a")] == 2)
    assert sample(registry, "moorage_controller_reconcile_errors_total") == 2


async def test_requeue_after_reconciles_again_without_an_event() -> None:
    informer, _ = informer_with(obj("a", "1"))
    registry = CollectorRegistry()
    reconciler = ScriptedReconciler(lambda _r, n: Result(requeue_after=0.01) if n < 3 else Result())
    controller = Controller("c", reconciler, primary=informer, metrics=OperatorMetrics(registry))
    async with running(controller, informer):
        await eventually(lambda: reconciler.calls[Request("ns", "a")] == 3)
    assert sample(registry, "moorage_controller_reconcile_total", result="requeue_after") == 2


async def test_a_key_is_never_reconciled_by_two_workers_at_once() -> None:
    informer, kube = informer_with(obj("a", "1"))
    reconciler = ScriptedReconciler()
    reconciler.gate = asyncio.Event()
    controller = Controller("c", reconciler, primary=informer, concurrency=4)
    async with running(controller, informer):
        await eventually(lambda: reconciler.in_flight)
        watch = await kube.next_watch(1)
        for rv in range(2, 12):
            watch.send("MODIFIED", obj("a", str(rv)))
        await eventually(
            lambda: len(controller.queue) == 0 and Request("ns", "a") in controller.queue._dirty
        )
        reconciler.gate.set()
        await eventually(lambda: reconciler.calls[Request("ns", "a")] == 2)
    assert reconciler.overlaps == 0
    assert reconciler.calls[Request("ns", "a")] == 2, "ten changes during one reconcile → one more"


async def test_owned_objects_enqueue_their_controller_owner() -> None:
    primary, _ = informer_with(kind=MCPSERVERS)
    owned_kube = FakeKube()
    owned_kube.script_list(None, ListResult([], "100"))
    owned = Informer(owned_kube, DEPLOYMENTS, policy=FAST)  # type: ignore[arg-type]
    reconciler = ScriptedReconciler()
    controller = Controller("c", reconciler, primary=primary)
    controller.owns(owned)
    async with running(controller, primary, owned):
        watch = await owned_kube.next_watch(1)
        child = obj("srv", "5")
        child["metadata"]["ownerReferences"] = [
            {
                "apiVersion": "moorage.dev/v1alpha1",
                "kind": "MCPServer",
                "name": "srv",
                "controller": True,
            }
        ]
        watch.send("ADDED", child)
        await eventually(lambda: reconciler.calls[Request("ns", "srv")] == 1)
        watch.send("DELETED", child)
        await eventually(lambda: reconciler.calls[Request("ns", "srv")] == 2)


async def test_watched_objects_go_through_the_mapper() -> None:
    primary, _ = informer_with(kind=MCPSERVERS)
    other_kube = FakeKube()
    other_kube.script_list(None, ListResult([obj("cfg", "1")], "100"))
    other = Informer(other_kube, CONFIGMAPS, policy=FAST)  # type: ignore[arg-type]
    reconciler = ScriptedReconciler()
    controller = Controller("c", reconciler, primary=primary)
    controller.watches(other, lambda o: [Request("ns", "x"), Request("ns", "y")])
    async with running(controller, primary, other):
        await eventually(lambda: set(reconciler.calls) == {Request("ns", "x"), Request("ns", "y")})


async def test_resync_reconciles_every_cached_primary_again() -> None:
    informer, _ = informer_with(obj("a", "1"), obj("b", "2"))
    reconciler = ScriptedReconciler()
    controller = Controller("c", reconciler, primary=informer, resync_period=0.05)
    async with running(controller, informer):
        await eventually(lambda: min(reconciler.calls.values(), default=0) >= 3)


async def test_stopping_lets_the_reconcile_in_flight_finish() -> None:
    informer, _ = informer_with(obj("a", "1"))
    finished = asyncio.Event()

    class Slow:
        async def reconcile(self, request: Request) -> Result:
            started.set()
            await asyncio.sleep(0.05)
            finished.set()
            return Result()

    started = asyncio.Event()
    controller = Controller("c", Slow(), primary=informer)
    informer_task = asyncio.create_task(informer.run())
    run = asyncio.create_task(controller.run(drain_timeout=5.0))
    await started.wait()
    run.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await run
    assert finished.is_set(), "the reconcile was drained, not cancelled"
    informer_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await informer_task


@pytest.mark.parametrize(
    ("refs", "expected"),
    [
        (
            [
                {
                    "apiVersion": "moorage.dev/v1alpha1",
                    "kind": "MCPServer",
                    "name": "s",
                    "controller": True,
                }
            ],
            [Request("ns", "s")],
        ),
        (
            [
                {
                    "apiVersion": "moorage.dev/v2",
                    "kind": "MCPServer",
                    "name": "s",
                    "controller": True,
                }
            ],
            [Request("ns", "s")],
        ),
        ([{"apiVersion": "moorage.dev/v1alpha1", "kind": "MCPServer", "name": "s"}], []),
        (
            [
                {
                    "apiVersion": "other.dev/v1alpha1",
                    "kind": "MCPServer",
                    "name": "s",
                    "controller": True,
                }
            ],
            [],
        ),
        ([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "controller": True}], []),
        (
            [
                {"apiVersion": "moorage.dev/v1alpha1", "kind": "MCPServer", "name": "a"},
                {
                    "apiVersion": "moorage.dev/v1alpha1",
                    "kind": "MCPServer",
                    "name": "b",
                    "controller": True,
                },
            ],
            [Request("ns", "b")],
        ),
        ([], []),
    ],
    ids=[
        "controller-ref",
        "any-version",
        "not-controller",
        "other-group",
        "other-kind",
        "picks-controller",
        "none",
    ],
)
def test_owner_requests(refs: list[dict[str, Any]], expected: list[Request]) -> None:
    child = obj("child", "1")
    child["metadata"]["ownerReferences"] = refs
    assert owner_requests(child, owner=MCPSERVERS) == expected
