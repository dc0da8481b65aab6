"""The in-memory cache of one kind, filled by its informer.

Objects are the apiserver's JSON dicts cut down by their kind's transform (trimming.py: no
`managedFields`, no last-applied annotation, only the fields the operator reads, strings shared).
They are shared, not copied: callers must treat what `get()` and `list()` return as read-only and
copy before changing anything.

Lookups: by namespace and name, all objects of a namespace, by label equality, and by named custom
indexes (`add_index`) such as "MCPServers that reference this MCPToolConfig". The cache turns every
change into a `CacheEvent`; `replace()` (a relist) reports what changed since the previous
snapshot, deletions included, so a consumer misses nothing that happened while a watch was down.

Pure data structure: no I/O, no asyncio. The informer is its only writer.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from moorage_core.kube import JsonObject, ResourceKind
from moorage_operator.runtime.trimming import Transform, transform_for

CacheKey = tuple[str, str]
"""(namespace, name) of an object; the namespace is "" for cluster-scoped kinds."""

EventType = Literal["ADDED", "MODIFIED", "DELETED"]
IndexFunc = Callable[[JsonObject], Iterable[str]]
"""Computes the index values of an object (e.g. the names of the ConfigMaps it references)."""


@dataclass(frozen=True, slots=True)
class CacheEvent:
    """One change to the cache.

    `object` is the new state (for DELETED the last state known); `old` is the previous state
    of a MODIFIED object and None otherwise.
    """

    type: EventType
    object: JsonObject
    old: JsonObject | None = None


def object_key(obj: Mapping[str, Any]) -> CacheKey:
    """The cache key of a JSON object."""
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def resource_version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def labels_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    labels: Mapping[str, str] = (obj.get("metadata") or {}).get("labels") or {}
    return labels


class Cache:
    """Objects of one kind by key, with namespace, label and custom indexes."""

    def __init__(self, kind: ResourceKind) -> None:
        self.kind = kind
        self._transform = transform_for(kind)
        self._by_namespace: dict[str, dict[str, JsonObject]] = {}
        """namespace → name → object; the store itself. Empty namespaces are removed."""
        self._by_label: dict[tuple[str, str], set[CacheKey]] = {}
        """(label key, value) → keys of the objects carrying that label."""
        self._indexers: dict[str, IndexFunc] = {}
        self._indexes: dict[str, dict[str, set[CacheKey]]] = {}
        """index name → index value → keys of the objects with that value."""
        self._indexed: dict[str, dict[CacheKey, tuple[str, ...]]] = {}
        """index name → key → the values the object was indexed under (to unindex it)."""
        self._count = 0

    @property
    def transform(self) -> Transform:
        """What `upsert` applies to each object; idempotent, so objects may come transformed."""
        return self._transform

    # -- reading ----------------------------------------------------------------------------

    def get(self, name: str, *, namespace: str = "") -> JsonObject | None:
        """The object called `name` in `namespace` ("" for cluster-scoped), or None."""
        return self._by_namespace.get(namespace, {}).get(name)

    def list(
        self, *, namespace: str | None = None, labels: Mapping[str, str] | None = None
    ) -> builtins.list[JsonObject]:
        """Objects in `namespace` (None: all) carrying every label in `labels` (equality)."""
        if labels:
            keys = self._keys_with_labels(labels)
            return [
                obj
                for key in sorted(keys)
                if namespace is None or key[0] == namespace
                if (obj := self.get(key[1], namespace=key[0])) is not None
            ]
        if namespace is not None:
            return list(self._by_namespace.get(namespace, {}).values())
        return [obj for objs in self._by_namespace.values() for obj in objs.values()]

    def keys(self, *, namespace: str | None = None) -> builtins.list[CacheKey]:
        """Keys of the objects in `namespace` (None: all)."""
        if namespace is not None:
            return [(namespace, name) for name in self._by_namespace.get(namespace, {})]
        return [(ns, name) for ns, objs in self._by_namespace.items() for name in objs]

    def namespaces(self) -> builtins.list[str]:
        """Namespaces holding at least one cached object."""
        return list(self._by_namespace)

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != 2:
            return False
        return self.get(str(key[1]), namespace=str(key[0])) is not None

    # -- custom indexes ---------------------------------------------------------------------

    def add_index(self, name: str, func: IndexFunc) -> None:
        """Index every object (present and future) under the values `func` returns."""
        if name in self._indexers:
            raise ValueError(f"index {name!r} already exists on the {self.kind.kind} cache")
        self._indexers[name] = func
        self._indexes[name] = {}
        self._indexed[name] = {}
        for key in self.keys():
            obj = self.get(key[1], namespace=key[0])
            assert obj is not None
            self._index_one(name, key, obj)

    def has_index(self, name: str) -> bool:
        return name in self._indexers

    def by_index(self, name: str, value: str) -> builtins.list[JsonObject]:
        """Objects indexed under `value` by the index `name`."""
        if name not in self._indexes:
            raise KeyError(f"no index {name!r} on the {self.kind.kind} cache")
        keys = self._indexes[name].get(value, set())
        return [
            obj for key in sorted(keys) if (obj := self.get(key[1], namespace=key[0])) is not None
        ]

    # -- writing (the informer) -------------------------------------------------------------

    def upsert(self, obj: JsonObject) -> CacheEvent | None:
        """Store `obj`; the event, or None when the same resourceVersion is already cached."""
        obj = self._transform(obj)
        key = object_key(obj)
        old = self.get(key[1], namespace=key[0])
        if old is not None and resource_version(old) == resource_version(obj):
            return None
        if old is not None:
            self._unindex(key, old)
        else:
            self._count += 1
        self._by_namespace.setdefault(key[0], {})[key[1]] = obj
        self._index(key, obj)
        return CacheEvent("ADDED", obj) if old is None else CacheEvent("MODIFIED", obj, old)

    def delete(self, obj: JsonObject) -> CacheEvent | None:
        """Remove the object with `obj`'s key; the event (with `obj`, the final state), or
        None when it was not cached."""
        obj = self._transform(obj)
        key = object_key(obj)
        if self._remove(key) is None:
            return None
        return CacheEvent("DELETED", obj)

    def replace(
        self, items: Iterable[JsonObject], *, namespace: str | None = None
    ) -> builtins.list[CacheEvent]:
        """Make the cache (or the part of it in `namespace`) hold exactly `items`.

        Returns what changed: ADDED for new keys, MODIFIED for a new resourceVersion, DELETED
        (with the last cached state) for keys that are gone.
        """
        events: list[CacheEvent] = []
        seen: set[CacheKey] = set()
        for obj in items:
            seen.add(object_key(obj))
            event = self.upsert(obj)
            if event is not None:
                events.append(event)
        for key in self.keys(namespace=namespace):
            if key not in seen:
                old = self._remove(key)
                assert old is not None
                events.append(CacheEvent("DELETED", old))
        return events

    # -- internals --------------------------------------------------------------------------

    def _remove(self, key: CacheKey) -> JsonObject | None:
        objs = self._by_namespace.get(key[0])
        if objs is None or key[1] not in objs:
            return None
        old = objs.pop(key[1])
        if not objs:
            del self._by_namespace[key[0]]
        self._count -= 1
        self._unindex(key, old)
        return old

    def _keys_with_labels(self, labels: Mapping[str, str]) -> set[CacheKey]:
        sets = [self._by_label.get(pair, set()) for pair in labels.items()]
        sets.sort(key=len)
        result = set(sets[0])
        for other in sets[1:]:
            result &= other
        return result

    def _index(self, key: CacheKey, obj: JsonObject) -> None:
        for pair in labels_of(obj).items():
            self._by_label.setdefault(pair, set()).add(key)
        for name in self._indexers:
            self._index_one(name, key, obj)

    def _index_one(self, name: str, key: CacheKey, obj: JsonObject) -> None:
        values = tuple(dict.fromkeys(self._indexers[name](obj)))
        if values:
            self._indexed[name][key] = values
        index = self._indexes[name]
        for value in values:
            index.setdefault(value, set()).add(key)

    def _unindex(self, key: CacheKey, obj: JsonObject) -> None:
        for pair in labels_of(obj).items():
            keys = self._by_label.get(pair)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_label[pair]
        for name, index in self._indexes.items():
            for value in self._indexed[name].pop(key, ()):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]
