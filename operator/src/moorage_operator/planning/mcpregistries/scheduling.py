"""When an MCPRegistry syncs: the pure decision a reconcile starts with.

Pure: "now" is passed in (wall-clock seconds, since status timestamps are wall-clock), so the
rules are table-tested. Everything the decision needs lives in the object (annotation,
generation, status) or is observed by the reconciler, so it survives an operator restart.

A reconcile syncs now, for the first reason that applies:

1. `requested`: annotation `moorage.dev/sync=true`;
2. `spec-changed`: `metadata.generation` differs from `status.observedGeneration` (this also
   covers the very first sync);
3. `source-changed`: the reconciler saw the source differ from what is stored (ConfigMap
   sources of automatic registries are watched and cheap to read, so every reconcile compares
   them);
4. `retry`: the last attempt failed and its back-off has passed. Back-off doubles per failure
   from `base` up to `cap` (never longer than the interval when syncing automatically). Sources
   a retry cannot change (a watched ConfigMap) are not retried on a timer;
5. `missing-data`: the storage does not hold the data the status says was synced (it was
   deleted or edited);
6. `interval`: `syncPolicy.automatic` and the interval (stretched by a per-object jitter of up to
   10 %, stable across reconciles, so registries created together do not sync together) has
   passed since the last attempt.

Otherwise the plan says when to look again (`requeue_after`), or never (manual sync only).
"""

from __future__ import annotations

import datetime
import enum
import hashlib
from dataclasses import dataclass
from typing import Final

from moorage_core.backoff import Backoff

JITTER: Final = 0.1
"""Largest stretch of an interval, as a fraction of it."""

SYNC_BACKOFF: Final = Backoff(base=10.0, cap=600.0)
"""Default delays between retries of a failing sync: 10 s doubling up to 10 min."""


class SyncReason(enum.StrEnum):
    """Why a reconcile syncs now."""

    REQUESTED = "requested"
    SPEC_CHANGED = "spec-changed"
    SOURCE_CHANGED = "source-changed"
    RETRY = "retry"
    MISSING_DATA = "missing-data"
    INTERVAL = "interval"


@dataclass(frozen=True, slots=True)
class SyncState:
    """What the decision looks at."""

    generation: int
    observed_generation: int | None
    requested: bool
    automatic: bool
    interval: float
    """Seconds between automatic syncs."""
    last_attempt: float | None
    """Wall-clock seconds of the last attempt (`status.syncStatus.lastAttempt`)."""
    failures: int
    """Consecutive failed attempts (`status.syncStatus.attemptCount`)."""
    has_data: bool
    """The storage holds the data the status says was last synced."""
    source_changed: bool = False
    retry_helps: bool = True
    """Whether retrying the same source can give a different answer (git: yes; a watched
    ConfigMap: no, its next change triggers a sync anyway)."""
    jitter: float = 0.0
    """This object's stretch of the interval, in [0, JITTER)."""


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """The decision: sync now for `reason`, or not; and when to look again."""

    reason: SyncReason | None
    """None: do not sync now."""
    requeue_after: float | None = None
    """Seconds until the next sync is due when not syncing now (None: no timed sync)."""

    @property
    def sync(self) -> bool:
        return self.reason is not None


def jitter_for(uid: str) -> float:
    """A stable stretch in [0, JITTER) derived from an object's uid."""
    digest = hashlib.sha256(uid.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 * JITTER


def plan_sync(state: SyncState, *, now: float, backoff: Backoff) -> SyncPlan:
    """Whether to sync now and why; otherwise when to look again (see the module)."""
    if state.requested:
        return SyncPlan(SyncReason.REQUESTED)
    if state.observed_generation != state.generation:
        return SyncPlan(SyncReason.SPEC_CHANGED)
    if state.source_changed:
        return SyncPlan(SyncReason.SOURCE_CHANGED)
    if state.last_attempt is None:
        # Never attempted for this generation: nothing to wait for.
        return SyncPlan(SyncReason.SPEC_CHANGED)
    if state.failures > 0:
        if not state.retry_helps:
            return SyncPlan(None)
        delay = backoff.delay(state.failures)
        if state.automatic:
            delay = min(delay, state.interval)
        return _due(SyncReason.RETRY, state.last_attempt + delay, now=now)
    if not state.has_data:
        return SyncPlan(SyncReason.MISSING_DATA)
    if not state.automatic:
        return SyncPlan(None)
    due = state.last_attempt + state.interval * (1.0 + state.jitter)
    return _due(SyncReason.INTERVAL, due, now=now)


def _due(reason: SyncReason, due: float, *, now: float) -> SyncPlan:
    if due <= now:
        return SyncPlan(reason)
    return SyncPlan(None, requeue_after=due - now)


def format_timestamp(seconds: float) -> str:
    """RFC 3339 in UTC with whole seconds, as Kubernetes writes times (`...T12:00:00Z`)."""
    moment = datetime.datetime.fromtimestamp(int(seconds), tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 time; None when absent or unreadable."""
    if not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()
