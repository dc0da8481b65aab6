"""Our protection finalizers on an object: added and removed without losing anyone else's.

The decision is `planning.finalizers.protection_action`; this module writes it, and checks with
the apiserver before letting an object go.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from moorage_api.constants import FIELD_MANAGER_OPERATOR
from moorage_core.errors import NotFound
from moorage_core.kube import MERGE_PATCH, JsonObject, KubeClient, ResourceKind
from moorage_operator.planning.finalizers import protection_action


async def set_finalizer(
    kube: KubeClient, kind: ResourceKind, obj: Mapping[str, Any], *, finalizer: str, add: bool
) -> JsonObject:
    """Add or remove `finalizer`; the object as written (as given when it is gone).

    The resourceVersion precondition makes a concurrent change fail with Conflict (retried)
    instead of losing someone else's finalizer.
    """
    meta = obj.get("metadata") or {}
    finalizers = [f for f in meta.get("finalizers") or [] if f != finalizer]
    if add:
        finalizers.append(finalizer)
    try:
        return await kube.patch(
            kind,
            {
                "metadata": {
                    "finalizers": finalizers,
                    "resourceVersion": meta.get("resourceVersion"),
                }
            },
            name=str(meta.get("name")),
            namespace=str(meta.get("namespace")),
            content_type=MERGE_PATCH,
            field_manager=FIELD_MANAGER_OPERATOR,
        )
    except NotFound:
        return dict(obj)


DependentT = TypeVar("DependentT")


async def converge_protection(
    kube: KubeClient,
    kind: ResourceKind,
    obj: JsonObject,
    *,
    finalizer: str,
    dependents: Sequence[DependentT],
    live_dependents: Callable[[], Awaitable[Sequence[DependentT]]],
) -> tuple[JsonObject, Sequence[DependentT]] | None:
    """Put `finalizer` on a live object; take it off a deleted one once nothing depends on it.

    `dependents` come from the caches; before releasing, `live_dependents()` asks the apiserver,
    since a dependent created a moment ago may not be cached yet. Returns the object and its
    dependents to report in the status, or None once released (the object is going away).
    """
    action = protection_action(obj, finalizer=finalizer, dependents=dependents)
    if action.add:
        return await set_finalizer(kube, kind, obj, finalizer=finalizer, add=True), dependents
    if action.remove:
        dependents = await live_dependents()
        if not dependents:
            await set_finalizer(kube, kind, obj, finalizer=finalizer, add=False)
            return None
    return obj, dependents
