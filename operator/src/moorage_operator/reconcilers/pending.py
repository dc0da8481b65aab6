"""Our own writes that the caches have not shown yet.

A reconcile compares what it wants with the cache before writing (spec §3.2: no write when
nothing changed). Right after a write, though, the cache may still hold the old object: the watch
event is on its way. A reconcile triggered meanwhile (by the events of the other children it just
applied) would see a difference that is already gone and write again. `PendingWrites` remembers
what each write left behind (the applied hash of a child, the status of a server) until the
informer reports any event for that object; from then on the cache is the truth again.

Forgetting on *any* event is what keeps this safe: if someone deletes or edits the object after
our write, the event that reports it also drops the memory, and the next reconcile sees the
change in the cache and repairs it.
"""

from __future__ import annotations

from typing import Any

from moorage_core.kube import ResourceKind
from moorage_operator.runtime.cache import CacheEvent, object_key
from moorage_operator.runtime.informer import EventHandler

PendingKey = tuple[str, str, str, str]
"""(API group, plural, namespace, name) of a written object."""


class PendingWrites:
    """What we last wrote per object, until the informer reports that object again."""

    def __init__(self) -> None:
        self._entries: dict[PendingKey, Any] = {}

    @staticmethod
    def _key(kind: ResourceKind, namespace: str, name: str) -> PendingKey:
        return kind.group, kind.plural, namespace, name

    def remember(self, kind: ResourceKind, *, namespace: str, name: str, value: Any) -> None:
        self._entries[self._key(kind, namespace, name)] = value

    def recall(self, kind: ResourceKind, *, namespace: str, name: str) -> Any | None:
        """What we wrote, if the cache has not reported the object since."""
        return self._entries.get(self._key(kind, namespace, name))

    def forgetting_handler(self, kind: ResourceKind) -> EventHandler:
        """An informer handler that forgets an object's entry on any event about it."""

        def forget(event: CacheEvent) -> None:
            namespace, name = object_key(event.object)
            self._entries.pop(self._key(kind, namespace, name), None)

        return forget

    def __len__(self) -> int:
        return len(self._entries)
