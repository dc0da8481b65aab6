"""Controllers: turn cache events into keys and keys into calls of a `Reconciler`.

A controller has one primary kind (its informer's events enqueue the object's own key) and any
number of secondary sources: owned kinds, whose events enqueue the controller owner named in
`metadata.ownerReferences`, and watched kinds, whose events go through a mapping function that
returns the keys to enqueue. Workers (`concurrency` of them) take keys from a `WorkQueue` and call
`reconciler.reconcile(Request)`:

- success → `forget` the key's back-off (and re-queue after `Result.requeue_after` if set);
- an exception → log, count, and re-queue with the key's exponential back-off;
- a `TerminalError` → log and count, but do not retry until the object changes again.

Every `resync_period` (jittered) all cached primaries are enqueued again, so a missed event or
a drifted external state is corrected eventually. Handlers are attached when the controller
starts (only on the leader); attaching replays the cache, so nothing that happened before is
missed.

Generic machinery: nothing here knows our kinds.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from moorage_core.errors import KubeError
from moorage_core.kube import JsonObject, ResourceKind
from moorage_operator.metrics import ControllerMetrics, OperatorMetrics
from moorage_operator.runtime.cache import CacheEvent, object_key
from moorage_operator.runtime.clock import Clock
from moorage_operator.runtime.informer import EventHandler, Informer
from moorage_operator.runtime.workqueue import ExponentialBackoff, QueueShutDown, WorkQueue

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True, order=True)
class Request:
    """The key of the object to reconcile. `namespace` is "" for cluster-scoped kinds."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True, slots=True)
class Result:
    """What a reconcile asks for beyond "done"."""

    requeue_after: float | None = None
    """Seconds after which to reconcile this key again even with no event (None: only on the
    next event or resync)."""


class TerminalError(Exception):
    """A failure a retry cannot fix (invalid input): logged and counted, not retried.

    The key is reconciled again on its next event, i.e. when someone changes the object.
    """


class Reconciler(Protocol):
    """The one-method seam between the runtime and the code that knows a kind."""

    async def reconcile(self, request: Request) -> Result:
        """Bring the world in line with the object named by `request`.

        Level-based: read the object from the cache (it may be gone), compute, write. Raise to be
        retried with back-off; raise `TerminalError` to give up until the object changes.
        """
        ...


Mapper = Callable[[JsonObject], Iterable[Request]]
"""Maps an object of a watched kind to the requests of the primaries it affects."""


def request_for(obj: Mapping[str, Any]) -> Request:
    """The request naming `obj` itself."""
    namespace, name = object_key(obj)
    return Request(namespace, name)


def owner_requests(obj: Mapping[str, Any], *, owner: ResourceKind) -> list[Request]:
    """Requests for `obj`'s controller owner if it is of kind `owner`.

    Only the reference with `controller: true` counts (there is at most one), matched on API
    group and kind (any version). Owners live in the object's namespace.
    """
    meta = obj.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if not ref.get("controller"):
            continue
        group = str(ref.get("apiVersion", "")).rpartition("/")[0]
        if ref.get("kind") == owner.kind and group == owner.group and ref.get("name"):
            return [Request(str(meta.get("namespace") or ""), str(ref["name"]))]
    return []


@dataclass(frozen=True, slots=True)
class _Source:
    informer: Informer
    handler: EventHandler


class Controller:
    """Reconciles the objects of one primary kind; see the module docstring.

    Build it (usually through `Manager.add_controller`), declare its secondary sources with
    `owns()` and `watches()`, then `run()` it (the manager does, while leading).
    """

    def __init__(
        self,
        name: str,
        reconciler: Reconciler,
        *,
        primary: Informer,
        concurrency: int = 4,
        resync_period: float | None = 36000.0,
        metrics: OperatorMetrics | None = None,
        clock: Clock | None = None,
        backoff_base: float = 0.005,
        backoff_cap: float = 1000.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"controller {name}: concurrency must be at least 1")
        self.name = name
        self.reconciler = reconciler
        self.primary = primary
        self.concurrency = concurrency
        self.resync_period = resync_period
        self._metrics: ControllerMetrics | None = metrics.controller(name) if metrics else None
        self.queue: WorkQueue[Request] = WorkQueue(
            name=name,
            clock=clock,
            rate_limiter=ExponentialBackoff(base=backoff_base, cap=backoff_cap),
            metrics=metrics.workqueue(name) if metrics else None,
        )
        self._sources: list[_Source] = []
        self._random = random.Random()  # noqa: S311 - jitter, not security
        self._running = False
        self._active = 0
        self._add_source(primary, lambda obj: [request_for(obj)])

    # -- declaring sources ------------------------------------------------------------------

    def owns(self, informer: Informer) -> None:
        """Reconcile the controller owner (of the primary kind) of each object `informer` sees.

        Deleting or editing an owned object thus triggers its owner's reconcile, which restores it.
        """
        owner = self.primary.kind
        self._add_source(informer, lambda obj: owner_requests(obj, owner=owner))

    def watches(self, informer: Informer, mapper: Mapper) -> None:
        """Reconcile the primaries `mapper` returns for each object `informer` sees (e.g. every
        MCPServer referencing a changed MCPToolConfig; a cache index makes that cheap)."""
        self._add_source(informer, mapper)

    def _add_source(self, informer: Informer, mapper: Mapper) -> None:
        if self._running:
            raise RuntimeError(f"controller {self.name}: add sources before it starts")

        def handler(event: CacheEvent) -> None:
            for request in mapper(event.object):
                self.queue.add(request)
            if event.old is not None:
                # The old state may point elsewhere (an owner or reference that changed).
                for request in mapper(event.old):
                    self.queue.add(request)

        self._sources.append(_Source(informer, handler))

    @property
    def informers(self) -> list[Informer]:
        """Every informer this controller reads events from, the primary first."""
        seen: dict[int, Informer] = {}
        for source in self._sources:
            seen.setdefault(id(source.informer), source.informer)
        return list(seen.values())

    def enqueue(self, request: Request, *, after: float | None = None) -> None:
        """Ask for a reconcile of `request` (now, or after `after` seconds)."""
        if after:
            self.queue.add_after(request, after)
        else:
            self.queue.add(request)

    # -- running ----------------------------------------------------------------------------

    async def run(self, *, drain_timeout: float = 10.0) -> None:
        """Attach handlers, wait for the caches, run the workers until cancelled; then stop
        taking keys and wait up to `drain_timeout` seconds for reconciles in flight."""
        if self._running:
            raise RuntimeError(f"controller {self.name} is already running")
        self._running = True
        if self._metrics is not None:
            self._metrics.max_concurrent.set(self.concurrency)
            self._metrics.active_workers.set(0)
        for source in self._sources:
            source.informer.add_handler(source.handler)
        workers: list[asyncio.Task[None]] = []
        try:
            await asyncio.gather(*(informer.wait_synced() for informer in self.informers))
            log.info("controller_started", controller=self.name, workers=self.concurrency)
            workers = [
                asyncio.create_task(self._worker(), name=f"controller {self.name} worker {i}")
                for i in range(self.concurrency)
            ]
            if self.resync_period:
                workers.append(asyncio.create_task(self._resync(), name=f"resync {self.name}"))
            # asyncio.wait, unlike gather, leaves the workers alone when we are cancelled, so
            # the reconciles in flight can finish below. Workers only return once the queue is
            # shut down, so one that ends here has crashed.
            done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for source in self._sources:
                source.informer.remove_handler(source.handler)
            drained = await self.queue.shutdown(drain=True, timeout=drain_timeout)
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            log.info("controller_stopped", controller=self.name, drained=drained)

    async def _worker(self) -> None:
        while True:
            try:
                request = await self.queue.get()
            except QueueShutDown:
                return
            try:
                await self._process(request)
            finally:
                self.queue.done(request)

    async def _process(self, request: Request) -> None:
        reconcile_id = uuid.uuid4().hex[:12]
        with structlog.contextvars.bound_contextvars(
            controller=self.name,
            namespace=request.namespace,
            name=request.name,
            reconcile_id=reconcile_id,
        ):
            self._set_active(+1)
            started = time.monotonic()
            outcome = "success"
            requeue_after: float | None = None
            try:
                result = await self.reconciler.reconcile(request)
            except TerminalError as exc:
                outcome = "error"
                self.queue.forget(request)
                if self._metrics is not None:
                    self._metrics.reconcile_errors.inc()
                    self._metrics.terminal_errors.inc()
                log.error("reconcile_failed", terminal=True, error=str(exc))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                outcome = "error"
                self.queue.add_rate_limited(request)
                if self._metrics is not None:
                    self._metrics.reconcile_errors.inc()
                log.warning(
                    "reconcile_failed",
                    terminal=False,
                    error=str(exc) or type(exc).__name__,
                    error_type=type(exc).__name__,
                    retries=self.queue.num_requeues(request),
                    # API errors are routine (a conflict, a 404 racing a delete): no traceback.
                    exc_info=not isinstance(exc, KubeError),
                )
            else:
                self.queue.forget(request)
                requeue_after = result.requeue_after
                if requeue_after is not None and requeue_after > 0:
                    outcome = "requeue_after"
                    self.queue.add_after(request, requeue_after)
            finally:
                self._set_active(-1)
            duration = time.monotonic() - started
            if self._metrics is not None:
                self._metrics.reconcile_time.observe(duration)
                self._metrics.count_result(outcome)
            if outcome != "error":
                log.info(
                    "reconcile_finished",
                    result=outcome,
                    requeue_after=requeue_after,
                    duration_s=round(duration, 4),
                )

    def _set_active(self, delta: int) -> None:
        self._active += delta
        if self._metrics is not None:
            self._metrics.active_workers.set(self._active)

    async def _resync(self) -> None:
        assert self.resync_period
        while True:
            await asyncio.sleep(self.resync_period * self._random.uniform(0.9, 1.1))
            keys = self.primary.cache.keys()
            log.info("resync", controller=self.name, objects=len(keys))
            for namespace, name in keys:
                self.queue.add(Request(namespace, name))


def requests_of(objects: Sequence[JsonObject]) -> list[Request]:
    """The requests naming each of `objects` (handy in mappers that read a cache index)."""
    return [request_for(obj) for obj in objects]
