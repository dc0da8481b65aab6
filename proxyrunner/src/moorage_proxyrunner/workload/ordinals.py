"""Which backend pod a stdio server's proxy replica attaches to, when its proxies share sessions
through Redis: one pod per proxy replica, each proxy holding a Lease on one ordinal.

A stdio server is one process with one stdin: two proxies attached to one pod would interleave
their writes and each read the other's answers. So with `replicas: N` (and Redis) the StatefulSet
runs N pods and proxy replica `holder` (its pod name) holds Lease `<statefulset>-stdio-<k>` for
the one ordinal k it attaches to (`<statefulset>-<k>`). A Lease is free when it does not exist,
names no holder, or was not renewed within its duration; the lowest free ordinal in 0..N-1 is
taken (an ordinal this holder already holds first, so a restart of the claim keeps its pod).

Pure: no I/O. `workload.ordinallease` reads and writes the Leases.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

LEASE_DURATION: Final = 15
"""Seconds a Lease stays held without renewal (`spec.leaseDurationSeconds`)."""
RENEW_EVERY: Final = 5.0
"""Seconds between renewals: three chances before the Lease expires."""


@dataclass(frozen=True, slots=True)
class LeaseView:
    """What the choice reads of one Lease."""

    holder: str
    """`spec.holderIdentity`; empty: released."""
    renewed: datetime.datetime | None
    """`spec.renewTime` (else `acquireTime`); None: never."""
    duration: int = LEASE_DURATION
    resource_version: str = ""


def parse_time(text: object) -> datetime.datetime | None:
    """A Lease's MicroTime (RFC 3339 with microseconds), or None when absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=datetime.UTC)


def format_time(moment: datetime.datetime) -> str:
    """MicroTime as the apiserver writes it: UTC, microseconds, `Z`."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_view(obj: Mapping[str, Any]) -> LeaseView:
    """The parts of a Lease object the choice reads."""
    spec = obj.get("spec") or {}
    duration = spec.get("leaseDurationSeconds")
    return LeaseView(
        holder=str(spec.get("holderIdentity") or ""),
        renewed=parse_time(spec.get("renewTime")) or parse_time(spec.get("acquireTime")),
        duration=duration if isinstance(duration, int) and duration > 0 else LEASE_DURATION,
        resource_version=str((obj.get("metadata") or {}).get("resourceVersion") or ""),
    )


def is_held(lease: LeaseView, *, now: datetime.datetime) -> bool:
    """Whether someone holds `lease` at `now` (named, and renewed within its duration)."""
    if not lease.holder or lease.renewed is None:
        return False
    return now < lease.renewed + datetime.timedelta(seconds=lease.duration)


def choose_ordinal(
    leases: Mapping[int, LeaseView | None],
    *,
    holder: str,
    ordinals: int,
    now: datetime.datetime,
) -> int | None:
    """The ordinal `holder` should claim among 0..`ordinals`-1, given the Leases found (None:
    the Lease does not exist): one it already holds, else the lowest free one; None when every
    ordinal is held by another."""
    candidates = range(ordinals)
    for ordinal in candidates:
        lease = leases.get(ordinal)
        if lease is not None and lease.holder == holder and is_held(lease, now=now):
            return ordinal
    for ordinal in candidates:
        lease = leases.get(ordinal)
        if lease is None or not is_held(lease, now=now) or lease.holder == holder:
            return ordinal
    return None


def lease_spec(*, holder: str, now: datetime.datetime, acquired: bool) -> dict[str, Any]:
    """The `spec` of a Lease `holder` holds from `now`; `acquired`: taken now (not renewed)."""
    stamp = format_time(now)
    spec: dict[str, Any] = {
        "holderIdentity": holder,
        "leaseDurationSeconds": LEASE_DURATION,
        "renewTime": stamp,
    }
    if acquired:
        spec["acquireTime"] = stamp
    return spec
