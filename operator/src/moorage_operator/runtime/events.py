"""Kubernetes Events (`events.k8s.io/v1`) about the objects we reconcile, deduplicated.

A reconcile that keeps failing the same way would otherwise write the same Event on every retry.
The same (object, type, reason, action, note) seen again within `window` seconds of its last
occurrence does not create a new Event: it bumps the existing Event's `series.count` (as
client-go's event recorder does), and when the last write was less than `min_interval` ago it
only counts, so a storm costs one write per interval. A later bump carries the full count.

Writing an Event is a courtesy to humans: `record()` never raises for API errors, it logs them,
so a reconcile never fails because an Event could not be written.

`EventDeduper` holds the pure decision (with an injected clock); `EventRecorder` does the I/O.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from moorage_core.errors import KubeError, NotFound
from moorage_core.kube import EVENTS, MERGE_PATCH, JsonObject, KubeClient
from moorage_operator.runtime.clock import Clock, MonotonicClock
from moorage_operator.runtime.leaderelection import format_micro_time

log = structlog.get_logger(__name__)

EventType = Literal["Normal", "Warning"]

_MAX_NOTE = 1024
_MAX_REASON = 128
_MAX_NAME_PREFIX = 200


@dataclass(frozen=True, slots=True)
class EventKey:
    """What makes two Events "the same"."""

    regarding: str
    """The object's uid, or kind/namespace/name when it has none."""
    type: str
    reason: str
    action: str
    note: str


@dataclass(frozen=True, slots=True)
class Emit:
    """What to write for one occurrence."""

    action: Literal["create", "bump", "skip"]
    count: int
    """Occurrences so far in this series (1 for a create)."""
    name: str | None = None
    """The Event to bump (None for create and skip)."""


@dataclass(slots=True)
class _Series:
    """One deduplicated Event; mutable bookkeeping private to `EventDeduper`."""

    count: int
    last_seen: float
    last_written: float
    name: str | None = None
    """Name of the Event object once it was created."""


class EventDeduper:
    """Decides whether an occurrence creates an Event, bumps its series, or is only counted."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        window: float = 600.0,
        min_interval: float = 30.0,
        max_series: int = 4096,
    ) -> None:
        self._clock: Clock = clock or MonotonicClock()
        self.window = window
        """Seconds since the last occurrence within which a repeat joins the series."""
        self.min_interval = min_interval
        """Seconds between two writes of the same series; repeats sooner are only counted."""
        self.max_series = max_series
        """Series remembered at most; the least recently seen are forgotten first."""
        self._series: OrderedDict[EventKey, _Series] = OrderedDict()

    def decide(self, key: EventKey) -> Emit:
        """Account for one occurrence of `key` now and say what to write."""
        now = self._clock.now()
        series = self._series.get(key)
        if series is None or series.name is None or now - series.last_seen > self.window:
            self._series[key] = _Series(count=1, last_seen=now, last_written=now)
            self._series.move_to_end(key)
            while len(self._series) > self.max_series:
                self._series.popitem(last=False)
            return Emit("create", 1)
        series.count += 1
        series.last_seen = now
        self._series.move_to_end(key)
        if now - series.last_written < self.min_interval:
            return Emit("skip", series.count, series.name)
        series.last_written = now
        return Emit("bump", series.count, series.name)

    def created(self, key: EventKey, name: str) -> None:
        """The Event for `key` now exists under `name`."""
        series = self._series.get(key)
        if series is not None:
            series.name = name

    def forget(self, key: EventKey) -> None:
        """The write for `key` failed: start afresh next time."""
        self._series.pop(key, None)


def regarding_ref(obj: Mapping[str, Any]) -> JsonObject:
    """The `ObjectReference` of `obj` for an Event's `regarding`."""
    meta = obj.get("metadata") or {}
    ref = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "uid": meta.get("uid"),
        "resourceVersion": meta.get("resourceVersion"),
    }
    return {k: v for k, v in ref.items() if v}


class EventRecorder:
    """Writes deduplicated Events for one reporting controller and instance."""

    def __init__(
        self,
        kube: KubeClient,
        *,
        reporting_controller: str = "moorage.dev/operator",
        reporting_instance: str,
        deduper: EventDeduper | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.kube = kube
        self.reporting_controller = reporting_controller
        self.reporting_instance = reporting_instance
        self.deduper = deduper or EventDeduper()
        self.timeout = timeout
        """Seconds one Event write may take before it is abandoned."""

    async def record(
        self,
        regarding: Mapping[str, Any],
        *,
        type_: EventType,
        reason: str,
        note: str,
        action: str,
    ) -> None:
        """Record that `action` on `regarding` happened for `reason` (CamelCase), with a
        human-readable `note`. Never raises for API errors."""
        meta = regarding.get("metadata") or {}
        note = note[:_MAX_NOTE]
        key = EventKey(
            regarding=str(
                meta.get("uid")
                or f"{regarding.get('kind')}/{meta.get('namespace')}/{meta.get('name')}"
            ),
            type=type_,
            reason=reason[:_MAX_REASON],
            action=action[:_MAX_REASON],
            note=note,
        )
        emit = self.deduper.decide(key)
        if emit.action == "skip":
            return
        namespace = str(meta.get("namespace") or "default")
        now = format_micro_time(datetime.datetime.now(datetime.UTC))
        try:
            async with asyncio.timeout(self.timeout):
                if emit.action == "bump" and emit.name is not None:
                    try:
                        await self.kube.patch(
                            EVENTS,
                            {"series": {"count": emit.count, "lastObservedTime": now}},
                            name=emit.name,
                            namespace=namespace,
                            content_type=MERGE_PATCH,
                        )
                        return
                    except NotFound:
                        pass  # expired (the apiserver keeps Events for an hour): start anew
                body = self._event_body(regarding, key=key, namespace=namespace, now=now)
                created = await self.kube.create(EVENTS, body, namespace=namespace)
                self.deduper.created(key, str(created["metadata"]["name"]))
        except (KubeError, TimeoutError) as exc:
            self.deduper.forget(key)
            log.warning(
                "event_write_failed",
                reason=key.reason,
                regarding=str(meta.get("name")),
                error=str(exc) or type(exc).__name__,
            )

    def _event_body(
        self, regarding: Mapping[str, Any], *, key: EventKey, namespace: str, now: str
    ) -> JsonObject:
        name = str((regarding.get("metadata") or {}).get("name") or "object")
        return {
            "apiVersion": EVENTS.api_version,
            "kind": EVENTS.kind,
            "metadata": {
                "name": f"{name[:_MAX_NAME_PREFIX]}.{time.time_ns():x}",
                "namespace": namespace,
            },
            "eventTime": now,
            "reportingController": self.reporting_controller,
            "reportingInstance": self.reporting_instance,
            "action": key.action,
            "reason": key.reason,
            "note": key.note,
            "type": key.type,
            "regarding": regarding_ref(regarding),
        }
