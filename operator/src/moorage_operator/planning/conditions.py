"""Status conditions (`metav1.Condition`) computed from what a reconcile observed.

Pure: no I/O. A planner says what each condition should be (`ConditionSpec`); `merge_conditions`
turns that into the wire list, keeping `lastTransitionTime` from the previous status while a
condition's `status` stays the same (as apimachinery's `meta.SetStatusCondition` does), so that a
reconcile with nothing new computes exactly the status already stored and writes nothing.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

JsonObject = dict[str, Any]
ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True, slots=True)
class ConditionSpec:
    """What one condition should say; the time and generation are added by `merge_conditions`."""

    type: str
    status: ConditionStatus
    reason: str
    """CamelCase, machine-readable."""
    message: str
    """A sentence a person can act on."""


def format_time(moment: datetime.datetime) -> str:
    """RFC 3339 in UTC with second precision, as `metav1.Time` is written."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(
    previous: Iterable[Mapping[str, Any]],
    desired: Sequence[ConditionSpec],
    *,
    generation: int | None,
    now: str,
) -> list[JsonObject]:
    """The conditions to store: one per `desired` entry, in its order.

    `lastTransitionTime` is `now` for a new condition or one whose status changed, and the
    previous value otherwise; reason, message and observedGeneration are always the new ones.
    Conditions of other types in `previous` are dropped: the planner owns the whole list.
    """
    before = {str(c.get("type")): c for c in previous if c.get("type")}
    merged: list[JsonObject] = []
    for spec in desired:
        old = before.get(spec.type)
        keep_time = old is not None and old.get("status") == spec.status
        transition = str(old.get("lastTransitionTime")) if keep_time and old else now
        condition: JsonObject = {
            "type": spec.type,
            "status": spec.status,
            "reason": spec.reason,
            "message": spec.message,
            "lastTransitionTime": transition,
        }
        if generation is not None:
            condition["observedGeneration"] = generation
        merged.append(condition)
    return merged


def find_condition(conditions: Iterable[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    """The condition of `type_`, or None."""
    for condition in conditions:
        if condition.get("type") == type_:
            return condition
    return None


def status_patch(
    previous: Mapping[str, Any], desired: Mapping[str, Any], *, fields: Sequence[str]
) -> JsonObject | None:
    """A JSON merge patch of `status` turning `previous` into `desired`, or None when equal.

    `fields` are the status fields the caller writes: one that `desired` lacks is set to null
    (removed); fields not listed (another writer's) are left alone.
    """
    patch: JsonObject = {}
    for key in fields:
        if key in desired:
            if previous.get(key) != desired[key]:
                patch[key] = desired[key]
        elif previous.get(key) is not None:
            patch[key] = None
    return patch or None
