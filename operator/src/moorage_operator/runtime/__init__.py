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
`moorage_operator.controllers.build_controllers` with `Manager.add_controller`.
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
