"""Writing a status subresource: only the fields that changed, remembered until the cache has it.

Shared by the reconcilers: the planners compute the whole status, `status_patch` (pure) turns it
into a JSON merge patch against what was there, and `patch_status` sends it and remembers the
result in `PendingWrites`, so that a reconcile before the watch event arrives compares with what
was written rather than with the stale cached status (and writes nothing again).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from moorage_api.constants import FIELD_MANAGER_OPERATOR
from moorage_core.errors import NotFound
from moorage_core.kube import MERGE_PATCH, KubeClient, ResourceKind
from moorage_operator.planning.conditions import status_patch
from moorage_operator.reconcilers.pending import PendingWrites


def previous_status(
    obj: Mapping[str, Any], *, kind: ResourceKind, pending: PendingWrites
) -> Mapping[str, Any]:
    """The status to compare with: the one we last wrote if the cache has not caught up."""
    meta = obj.get("metadata") or {}
    remembered = pending.recall(
        kind, namespace=str(meta.get("namespace") or ""), name=str(meta.get("name"))
    )
    if isinstance(remembered, Mapping):
        return remembered
    status = obj.get("status")
    return status if isinstance(status, Mapping) else {}


async def patch_status(
    kube: KubeClient,
    kind: ResourceKind,
    obj: Mapping[str, Any],
    *,
    previous: Mapping[str, Any],
    status: Mapping[str, Any],
    fields: Sequence[str],
    pending: PendingWrites,
) -> list[str]:
    """Patch the `fields` of `obj`'s status that differ from `previous`; the fields written
    (none when nothing changed or the object is gone)."""
    patch = status_patch(previous, status, fields=fields)
    if patch is None:
        return []
    meta = obj.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name"))
    try:
        result = await kube.patch(
            kind,
            {"status": patch},
            name=name,
            namespace=namespace,
            subresource="status",
            content_type=MERGE_PATCH,
            field_manager=FIELD_MANAGER_OPERATOR,
        )
    except NotFound:
        return []  # deleted meanwhile: nothing left to report on
    pending.remember(kind, namespace=namespace, name=name, value=result.get("status") or {})
    return sorted(patch)


async def write_status(
    kube: KubeClient,
    kind: ResourceKind,
    obj: Mapping[str, Any],
    *,
    compute: Callable[[Mapping[str, Any]], Mapping[str, Any]],
    fields: Sequence[str],
    pending: PendingWrites,
) -> list[str]:
    """Compute `obj`'s status from its previous one (`compute(previous)`) and patch what changed;
    the fields written."""
    previous = previous_status(obj, kind=kind, pending=pending)
    return await patch_status(
        kube, kind, obj, previous=previous, status=compute(previous), fields=fields, pending=pending
    )
