"""Adding and removing one of our finalizers on an object, without losing anyone else's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from moorage_api.constants import FIELD_MANAGER_OPERATOR
from moorage_core.errors import NotFound
from moorage_core.kube import MERGE_PATCH, JsonObject, KubeClient, ResourceKind


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
