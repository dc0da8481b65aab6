"""The operator's controller machinery, with no knowledge of our kinds.

- `Informer` / `Cache` (informer.py, cache.py): list+watch one kind into an indexed cache and
  report changes to handlers.
- `WorkQueue` (workqueue.py): client-go's deduplicating, delaying, rate-limited queue.
- `Controller`, `Reconciler`, `Request`, `Result`, `TerminalError` (controller.py): events to
  keys, keys to `reconcile()` calls on N workers.
- `LeaderElector` (leaderelection.py): the Lease that decides which replica reconciles.
- `Manager` (manager.py): runs all of the above plus the HTTPS metrics/health server.
- `EventRecorder` (events.py): deduplicated `events.k8s.io/v1` Events.

A reconciler implements `Reconciler.reconcile(request) -> Result` and is registered in
`moorage_operator.wiring.build_controllers`:

    ctl = manager.add_controller("mcpserver", reconciler, for_kind=MCPSERVERS)
    ctl.owns(manager.owned_informer(DEPLOYMENTS))        # child events → controller owner
    ctl.watches(manager.informer(MCPTOOLCONFIGS), mapper)  # any object → mapper(obj) requests
    servers = manager.informer(MCPSERVERS).cache          # what the reconciler reads

`owns()` maps an object to the owner named by its `ownerReferences` entry with
`controller: true` whose group and kind are the primary's (same namespace); `owned_informer`
watches only objects labelled `app.kubernetes.io/managed-by=moorage`. A mapper returns the
`Request`s to enqueue; a cache index (`Cache.add_index` / `by_index`) keeps it a lookup. For a
MODIFIED event both the new and the old object are mapped, so a changed reference re-enqueues
the old referrer too.

Within `reconcile`: read from caches (objects are shared: copy before changing), write with the
`KubeClient`, return `Result(requeue_after=...)`; raise to be retried with per-key back-off
(5 ms doubling to 1000 s), raise `TerminalError` to stop retrying until the object changes.
`Manager.event_recorder()` gives an `EventRecorder` whose `record()` never raises.
"""

from moorage_operator.runtime.cache import Cache, CacheEvent, CacheKey
from moorage_operator.runtime.controller import (
    Controller,
    Mapper,
    Reconciler,
    Request,
    Result,
    TerminalError,
    owner_requests,
    request_for,
    requests_of,
)
from moorage_operator.runtime.events import EventRecorder
from moorage_operator.runtime.informer import MANAGED_BY_SELECTOR, EventHandler, Informer
from moorage_operator.runtime.leaderelection import LeaderElectionConfig, LeadershipLost
from moorage_operator.runtime.manager import Manager, ManagerOptions
from moorage_operator.runtime.workqueue import QueueShutDown, WorkQueue

__all__ = [
    "MANAGED_BY_SELECTOR",
    "Cache",
    "CacheEvent",
    "CacheKey",
    "Controller",
    "EventHandler",
    "EventRecorder",
    "Informer",
    "LeaderElectionConfig",
    "LeadershipLost",
    "Manager",
    "ManagerOptions",
    "Mapper",
    "QueueShutDown",
    "Reconciler",
    "Request",
    "Result",
    "TerminalError",
    "WorkQueue",
    "owner_requests",
    "request_for",
    "requests_of",
]
