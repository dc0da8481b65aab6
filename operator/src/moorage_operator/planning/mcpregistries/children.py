"""What every object an MCPRegistry owns shares: its metadata and controller owner reference.

Pure. (Whether a cached child already holds what we would apply is
`moorage_operator.planning.comparing`, shared with the other reconcilers.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from moorage_api.constants import (
    API_VERSION,
    KIND_MCPREGISTRY,
    LABEL_COMPONENT,
)
from moorage_api.naming import mcpregistry_labels

JsonObject = dict[str, Any]
"""A Kubernetes object as the apiserver speaks it (the kube client's type, without importing
the client: this package does no I/O)."""


@dataclass(frozen=True, slots=True)
class Owner:
    """The MCPRegistry that owns a child."""

    name: str
    namespace: str
    uid: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Owner:
        """The owner identity of a raw MCPRegistry object."""
        meta = obj.get("metadata") or {}
        return cls(
            name=str(meta.get("name") or ""),
            namespace=str(meta.get("namespace") or ""),
            uid=str(meta.get("uid") or ""),
        )


def owner_reference(owner: Owner) -> JsonObject:
    """The controller ownerReference to the MCPRegistry (garbage collection deletes children)."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND_MCPREGISTRY,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_labels(owner: Owner, *, component: str | None = None) -> dict[str, str]:
    """Labels of a child (spec §3 conventions), with `app.kubernetes.io/component` if given."""
    labels = mcpregistry_labels(owner.name)
    if component is not None:
        labels[LABEL_COMPONENT] = component
    return labels


def child_metadata(
    owner: Owner,
    *,
    name: str,
    component: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> JsonObject:
    """`metadata` of a child in the owner's namespace."""
    meta: JsonObject = {
        "name": name,
        "namespace": owner.namespace,
        "labels": child_labels(owner, component=component),
        "ownerReferences": [owner_reference(owner)],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta
