"""Informers: keep a `Cache` of one kind in step with the apiserver and tell handlers what changed.

For each scope (one per watched namespace, or one cluster-wide) an informer lists, then watches
from the list's resourceVersion with bookmarks and a server-side timeout. A watch that ends is
resumed from the last resourceVersion seen; a 410 Gone (the version was compacted away) makes it
list again, and the relist's diff against the cache reports every change missed meanwhile,
deletions included. A watch that stays silent longer than the inactivity timeout is assumed dead
(a half-open connection never delivers the server's close) and restarted. Errors back off with
jitter. The decision of what to do after a watch ends is the pure function `plan_restart`.

Event handlers are plain callables run on the event loop after the cache has changed; they must
be quick and must not raise (a controller's handler only enqueues keys). A handler that raises is
a bug and stops the informer, which stops the process.

This module knows nothing about our kinds; it is given a `ResourceKind` and selectors.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from moorage_core.backoff import Backoff
from moorage_core.errors import Gone, KubeError
from moorage_core.kube import JsonObject, KubeClient, ResourceKind
from moorage_operator.runtime.cache import Cache, CacheEvent, resource_version

log = structlog.get_logger(__name__)

EventHandler = Callable[[CacheEvent], None]
"""Called with each change after the cache applied it; must be quick and must not raise."""

MANAGED_BY_SELECTOR = "app.kubernetes.io/managed-by=moorage"
"""The label selector of the objects Moorage creates (the owned kinds are watched through it)."""


@dataclass(frozen=True, slots=True)
class WatchPolicy:
    """Timing of an informer's list/watch loop."""

    min_watch_timeout: float = 300.0
    """Seconds; each watch asks the server to end it after a random time in [min, 2·min), so
    that many watches do not all reconnect at once (client-go does the same)."""
    inactivity_timeout: float = 150.0
    """Seconds without any event or bookmark after which a watch is presumed dead and restarted.
    The apiserver sends a bookmark about every minute to watches that allow them."""
    backoff_initial: float = 0.8
    """Seconds before the first retry of a failed list or watch; doubles per failure."""
    backoff_cap: float = 30.0
    """Upper bound in seconds of the back-off (before jitter)."""
    backoff_jitter: float = 1.0
    """Each back-off is stretched by a random factor in [1, 1 + jitter)."""
    short_watch: float = 1.0
    """Seconds; a watch that the server closes sooner than this without delivering anything is
    treated as a failure, so a misbehaving server cannot make us reconnect in a hot loop."""

    @property
    def backoff(self) -> Backoff:
        """The back-off the three `backoff_*` fields describe."""
        return Backoff(base=self.backoff_initial, cap=self.backoff_cap, jitter=self.backoff_jitter)


class WatchEnd(enum.Enum):
    """Why a watch stream stopped."""

    CLOSED = "closed"
    """The server ended the stream (its timeout) normally."""
    GONE = "gone"
    """410: the resourceVersion we watched from is no longer available."""
    INACTIVE = "inactive"
    """Nothing arrived within the inactivity timeout."""
    FAILED = "failed"
    """The request or the stream failed (connection, 5xx, 403, ...)."""


@dataclass(frozen=True, slots=True)
class WatchOutcome:
    """What one watch attempt came to."""

    end: WatchEnd
    resource_version: str
    """The last resourceVersion seen (from an event or a bookmark), or the one we started at."""
    events: int = 0
    """Events and bookmarks received."""
    duration: float = 0.0
    """Seconds the watch lasted."""


@dataclass(frozen=True, slots=True)
class Restart:
    """What to do after a watch ended."""

    relist: bool
    """List again (and diff against the cache) instead of resuming the watch."""
    resource_version: str
    """Where to resume the watch when not relisting ("" when relisting)."""
    delay: float
    """Seconds to wait first."""
    failures: int
    """Consecutive failures counted after this outcome (drives the next back-off)."""


def backoff_delay(failures: int, *, policy: WatchPolicy, rand: float) -> float:
    """Seconds to wait after `failures` consecutive failures (0 → the initial delay), with
    `rand` in [0, 1) choosing the jitter."""
    return policy.backoff.delay(failures + 1, rand=rand)


def plan_restart(
    outcome: WatchOutcome, *, failures: int, policy: WatchPolicy, rand: float
) -> Restart:
    """Decide how to go on after a watch ended.

    - 410 Gone, or no resourceVersion to resume from: relist at once.
    - Closed by the server or silent too long: resume from the last resourceVersion at once;
      the failure count is reset, the connection worked.
    - A failure, or a close so quick and empty it looks like one: resume from the last
      resourceVersion after a jittered back-off. Resuming is cheap; if the version has been
      compacted meanwhile the server answers 410 and we relist then.
    """
    if outcome.end is WatchEnd.GONE or not outcome.resource_version:
        return Restart(relist=True, resource_version="", delay=0.0, failures=0)
    suspicious_close = (
        outcome.end is WatchEnd.CLOSED
        and outcome.events == 0
        and outcome.duration < policy.short_watch
    )
    if outcome.end is WatchEnd.FAILED or suspicious_close:
        return Restart(
            relist=False,
            resource_version=outcome.resource_version,
            delay=backoff_delay(failures, policy=policy, rand=rand),
            failures=failures + 1,
        )
    return Restart(relist=False, resource_version=outcome.resource_version, delay=0.0, failures=0)


class Informer:
    """List/watch one kind (optionally filtered by selectors) into a `Cache`.

    `namespaces` empty → one cluster-wide list/watch; otherwise one per namespace (a
    cluster-scoped kind is always watched cluster-wide). Run it with `run()` (until cancelled);
    `has_synced()` turns true once every scope's first list is in the cache.
    """

    def __init__(
        self,
        kube: KubeClient,
        kind: ResourceKind,
        *,
        namespaces: Sequence[str] = (),
        label_selector: str | None = None,
        field_selector: str | None = None,
        policy: WatchPolicy | None = None,
    ) -> None:
        self.kube = kube
        self.kind = kind
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.policy = policy or WatchPolicy()
        self.cache = Cache(kind)
        self.scopes: tuple[str | None, ...] = (
            tuple(namespaces) if namespaces and kind.namespaced else (None,)
        )
        """The namespaces listed and watched one by one; (None,) means cluster-wide."""
        self._handlers: list[EventHandler] = []
        self._synced_scopes: set[str | None] = set()
        self._synced = asyncio.Event()
        self._random = random.Random()  # noqa: S311 - jitter, not security
        self.relists = 0
        """Lists done after the first one of each scope (410s and relists after errors)."""

    @property
    def name(self) -> str:
        selectors = ",".join(s for s in (self.label_selector, self.field_selector) if s)
        return f"{self.kind.plural}.{self.kind.group}" + (f"[{selectors}]" if selectors else "")

    # -- handlers ---------------------------------------------------------------------------

    def add_handler(self, handler: EventHandler) -> None:
        """Call `handler` for every future change, and at once with an ADDED event for each
        object already cached (so a late handler sees the same world as an early one)."""
        self._handlers.append(handler)
        for obj in self.cache.list():
            handler(CacheEvent("ADDED", obj))

    def remove_handler(self, handler: EventHandler) -> None:
        if handler in self._handlers:
            self._handlers.remove(handler)

    def _dispatch(self, events: Sequence[CacheEvent]) -> None:
        handlers = list(self._handlers)
        for event in events:
            for handler in handlers:
                handler(event)

    # -- sync state -------------------------------------------------------------------------

    def has_synced(self) -> bool:
        """True once the first list of every scope is in the cache."""
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    def _mark_synced(self, scope: str | None) -> None:
        self._synced_scopes.add(scope)
        if len(self._synced_scopes) == len(self.scopes) and not self._synced.is_set():
            self._synced.set()
            log.info("informer_synced", informer=self.name, objects=len(self.cache))

    # -- the loops --------------------------------------------------------------------------

    async def run(self) -> None:
        """List and watch every scope until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            for scope in self.scopes:
                tasks.create_task(self._list_watch(scope), name=f"informer {self.name} {scope}")

    async def _list_watch(self, scope: str | None) -> None:
        bound = log.bind(informer=self.name, scope=scope or "*")
        rv = ""
        failures = 0
        listed = False
        while True:
            if not rv:
                try:
                    result = await self.kube.list(
                        self.kind,
                        namespace=scope,
                        label_selector=self.label_selector,
                        field_selector=self.field_selector,
                        # Trimmed page by page: a relist never holds whole objects of every item.
                        transform=self.cache.transform,
                    )
                except KubeError as exc:
                    delay = backoff_delay(failures, policy=self.policy, rand=self._random.random())
                    failures += 1
                    bound.warning("list_failed", error=str(exc), retry_in_s=round(delay, 3))
                    await asyncio.sleep(delay)
                    continue
                failures = 0
                if listed:
                    self.relists += 1
                listed = True
                rv = result.resource_version
                events = self.cache.replace(result.items, namespace=scope)
                bound.debug("listed", objects=len(result.items), changes=len(events), rv=rv)
                self._dispatch(events)
                self._mark_synced(scope)
            outcome = await self._watch(scope, rv, bound)
            restart = plan_restart(
                outcome, failures=failures, policy=self.policy, rand=self._random.random()
            )
            failures = restart.failures
            rv = restart.resource_version
            if restart.relist:
                bound.info("relisting", reason=outcome.end.value)
            if restart.delay > 0:
                await asyncio.sleep(restart.delay)

    async def _watch(
        self, scope: str | None, rv: str, bound: structlog.typing.FilteringBoundLogger
    ) -> WatchOutcome:
        """One watch from `rv` until it ends; applies and dispatches what arrives."""
        timeout = int(self.policy.min_watch_timeout * (1.0 + self._random.random()))
        stream = self.kube.watch(
            self.kind,
            resource_version=rv,
            namespace=scope,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            timeout_seconds=max(1, timeout),
            allow_bookmarks=True,
        )
        started = time.monotonic()
        received = 0
        end = WatchEnd.CLOSED
        try:
            while True:
                try:
                    async with asyncio.timeout(self.policy.inactivity_timeout):
                        event = await anext(stream)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    end = WatchEnd.INACTIVE
                    bound.info("watch_inactive", rv=rv, after_s=self.policy.inactivity_timeout)
                    break
                except Gone as exc:
                    end = WatchEnd.GONE
                    bound.info("watch_gone", rv=rv, error=str(exc))
                    break
                except KubeError as exc:
                    end = WatchEnd.FAILED
                    bound.warning("watch_failed", rv=rv, error=str(exc))
                    break
                except ValueError as exc:
                    # A record that is not JSON: a stream cut mid-line. Resume like any failure.
                    end = WatchEnd.FAILED
                    bound.warning("watch_garbled", rv=rv, error=str(exc))
                    break
                received += 1
                rv = resource_version(event.object) or rv
                if event.type == "BOOKMARK":
                    continue
                change = self._apply(event.type, event.object)
                if change is not None:
                    self._dispatch((change,))
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        return WatchOutcome(
            end=end, resource_version=rv, events=received, duration=time.monotonic() - started
        )

    def _apply(self, type_: str, obj: JsonObject) -> CacheEvent | None:
        if type_ in ("ADDED", "MODIFIED"):
            return self.cache.upsert(obj)
        if type_ == "DELETED":
            return self.cache.delete(obj)
        log.warning("watch_event_unknown", informer=self.name, type=type_)
        return None
