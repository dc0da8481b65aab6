"""A small informer: the objects of one kind that match a selector, kept current by list + watch.

The proxy runner follows a handful of objects (its StatefulSet, Service and NetworkPolicy by name,
the MCP server's pods by label); the webhook follows the cluster-scoped MCPTenants (pass
`namespace=""` for a cluster-scoped kind). `WatchedSet.run()` lists, then watches from the list's
resourceVersion, relists on 410 Gone, and backs off on other API errors; readers take a
`snapshot()` or `wait_until()` a condition on it holds. Every change bumps a version and wakes
waiters, and an optional callback hears about each event (to trigger healing).

I/O shell only: what the objects mean is decided elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final, TypeVar

import structlog

from moorage_core.backoff import Backoff
from moorage_core.errors import Gone, KubeError
from moorage_core.kube import JsonObject, KubeClient, ResourceKind

log = structlog.get_logger(__name__)

T = TypeVar("T")
ChangeCallback = Callable[[str, JsonObject], None]
"""Called with (event type, object) for ADDED, MODIFIED and DELETED, after the cache changed."""

WATCH_BACKOFF: Final = Backoff(base=0.5, cap=30.0)
"""Waits between tries of a failing list or watch."""


class WatchedSet:
    """The objects of `kind` in `namespace` matching the selectors, by name."""

    def __init__(
        self,
        kube: KubeClient,
        kind: ResourceKind,
        *,
        namespace: str,
        label_selector: str | None = None,
        field_selector: str | None = None,
        on_change: ChangeCallback | None = None,
        backoff: Backoff = WATCH_BACKOFF,
        watch_timeout: int = 300,
    ) -> None:
        self._kube = kube
        self.kind = kind
        self.namespace = namespace
        self._label_selector = label_selector
        self._field_selector = field_selector
        self._on_change = on_change
        self._backoff = backoff
        self._watch_timeout = watch_timeout
        self._objects: dict[str, JsonObject] = {}
        self._changed = asyncio.Condition()
        self.version = 0
        """Bumped on every change of the cache (and when it is first filled)."""
        self.synced = False
        """True once the first list has filled the cache."""

    def snapshot(self) -> list[JsonObject]:
        return list(self._objects.values())

    def get(self, name: str) -> JsonObject | None:
        return self._objects.get(name)

    async def wait_until(self, check: Callable[[list[JsonObject]], T | None]) -> T:
        """Wait (unbounded: wrap in `asyncio.timeout`) until `check(snapshot)` is truthy."""
        async with self._changed:
            while True:
                if self.synced:
                    result = check(self.snapshot())
                    if result:
                        return result
                await self._changed.wait()

    async def wait_changed(self, version: int) -> int:
        """Wait until the cache is newer than `version`; the new version."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.version != version)
            return self.version

    async def run(self) -> None:
        """List and watch until cancelled."""
        failures = 0
        while True:
            try:
                resource_version = await self._relist()
                failures = 0
                while True:
                    resource_version = await self._watch(resource_version)
            except Gone:
                log.debug("watch_expired", kind=self.kind.kind, namespace=self.namespace)
            except KubeError as exc:
                failures += 1
                delay = self._backoff.delay(failures)
                log.warning(
                    "watch_failed",
                    kind=self.kind.kind,
                    namespace=self.namespace,
                    error=str(exc),
                    retry_in_s=delay,
                )
                await asyncio.sleep(delay)

    async def _relist(self) -> str:
        listed = await self._kube.list(
            self.kind,
            namespace=self.namespace,
            label_selector=self._label_selector,
            field_selector=self._field_selector,
        )
        fresh = {_name(obj): obj for obj in listed.items}
        gone = [obj for name, obj in self._objects.items() if name not in fresh]
        added = [obj for name, obj in fresh.items() if name not in self._objects]
        modified = [
            obj
            for name, obj in fresh.items()
            if name in self._objects and _rv(self._objects[name]) != _rv(obj)
        ]
        self._objects = fresh
        self.synced = True
        await self._notify()
        # Changes missed while not watching are reported like watch events.
        for type_, objs in (("DELETED", gone), ("ADDED", added), ("MODIFIED", modified)):
            for obj in objs:
                self._report(type_, obj)
        return listed.resource_version

    async def _watch(self, resource_version: str) -> str:
        async for event in self._kube.watch(
            self.kind,
            namespace=self.namespace,
            resource_version=resource_version,
            label_selector=self._label_selector,
            field_selector=self._field_selector,
            timeout_seconds=self._watch_timeout,
        ):
            obj = event.object
            resource_version = _rv(obj) or resource_version
            if event.type == "BOOKMARK":
                continue
            if event.type == "DELETED":
                self._objects.pop(_name(obj), None)
            elif event.type in ("ADDED", "MODIFIED"):
                obj.setdefault("apiVersion", self.kind.api_version)
                obj.setdefault("kind", self.kind.kind)
                self._objects[_name(obj)] = obj
            else:
                continue
            await self._notify()
            self._report(event.type, obj)
        return resource_version

    async def _notify(self) -> None:
        async with self._changed:
            self.version += 1
            self._changed.notify_all()

    def _report(self, type_: str, obj: JsonObject) -> None:
        if self._on_change is not None:
            self._on_change(type_, obj)


def _name(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _rv(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")
