"""What the cache keeps of each kind: a transform applied to every object the informer stores.

At a thousand MCPServers most of the operator's memory is cached objects, and most of each
object is never read: `managedFields`, kubectl's last-applied annotation (a second copy of the
object), a pod's whole spec, a StatefulSet's pod template, an Event's source and counters. Like
controller-runtime's `TransformStripManagedFields`, the informer drops them before caching.

What must stay (spec §3.2, "no write when nothing changed"):
- of every kind, all of `metadata` except the two fields above: keys, resourceVersion (the
  cache's change test), labels (indexes, mappers), ownerReferences (`Controller.owns`), uid,
  generation, deletionTimestamp, and our `moorage.dev/applied-hash` annotation;
- of the kinds we apply (ServiceAccount, Role, RoleBinding, ConfigMap, Deployment, Service), the
  whole body but `status`: `planning.comparing.is_applied` compares it with what we would apply,
  and a field it could not see would turn every reconcile into a write;
- of each status, and of the kinds we only watch, the fields listed below with their readers.

Kinds not listed lose only the two metadata fields. Then every key, and every short string value,
is replaced by the one shared copy of that string (`share_strings`): each object is decoded on
its own, so a thousand Deployments otherwise hold a thousand copies of "containers",
"imagePullPolicy", their image and label values; sharing halves what they take.

Pure: no I/O.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any, Final

from moorage_core.kube import CORE_EVENTS, DEPLOYMENTS, PODS, STATEFULSETS, ResourceKind

JsonObject = dict[str, Any]
Transform = Callable[[JsonObject], JsonObject]

LAST_APPLIED: Final = "kubectl.kubernetes.io/last-applied-configuration"
"""kubectl's copy of the whole object as last applied; nothing in the operator reads it."""

DEPLOYMENT_STATUS: Final = ("readyReplicas", "observedGeneration", "conditions")
"""`readyReplicas`: planning.mcpservers.status.ready_replicas and
planning.mcpregistries.apiservice.is_deployment_ready; `observedGeneration`:
is_deployment_ready; `conditions`: planning.mcpservers.status._deadline_exceeded."""

STATEFULSET_SPEC: Final = ("replicas",)
"""planning.mcpservers.status.wanted_replicas (the StatefulSet is the proxy runner's: we never
apply it)."""
STATEFULSET_STATUS: Final = ("readyReplicas",)
"""planning.mcpservers.status.ready_replicas."""

POD_CONTAINER_STATUS: Final = ("name", "state")
"""planning.mcpservers.status.pod_failure reads `state.waiting.reason` of each (init) container
status; a pod's spec and the rest of its status are read by nobody."""
POD_STATUS_LISTS: Final = ("initContainerStatuses", "containerStatuses")

EVENT_FIELDS: Final = (
    "apiVersion",
    "kind",
    "metadata",
    "involvedObject",
    "reason",
    "message",
    "lastTimestamp",
    "eventTime",
)
"""planning.mcpservers.status.describe_refusal (reason, message, involvedObject.uid, the three
times) and wiring.mcpservers.refused_statefulset_mapper (involvedObject.name/namespace)."""


SHARED_STRING_MAX: Final = 64
"""Longer values (messages, certificates, documents) are rarely repeated: not worth a lookup."""


def share_strings(value: Any) -> Any:
    """`value` with its keys and short strings interned (one shared copy each), changed in
    place: rebuilding a copy would hold a relist's objects twice at its peak.

    Only exact `str` is interned: `sys.intern` refuses subclasses, such as a `StrEnum` member
    in an object built in-process rather than decoded from the apiserver's JSON.
    """
    if isinstance(value, dict):
        items = [(_intern(key), share_strings(item)) for key, item in value.items()]
        value.clear()
        value.update(items)
    elif isinstance(value, list):
        value[:] = [share_strings(item) for item in value]
    elif type(value) is str and len(value) <= SHARED_STRING_MAX:
        return sys.intern(value)
    return value


def _intern(key: Any) -> Any:
    return sys.intern(key) if type(key) is str else key


def strip_metadata(obj: JsonObject) -> JsonObject:
    """Drop `managedFields` and the last-applied annotation; mutates and returns `obj`."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
        annotations = meta.get("annotations")
        if isinstance(annotations, dict) and LAST_APPLIED in annotations:
            del annotations[LAST_APPLIED]
            if not annotations:
                del meta["annotations"]
    return obj


def _pick(value: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        return {}
    return {key: value[key] for key in keys if key in value}


def _set_or_drop(obj: JsonObject, key: str, value: dict[str, Any]) -> None:
    if value:
        obj[key] = value
    else:
        obj.pop(key, None)


def trim_deployment(obj: JsonObject) -> JsonObject:
    """A Deployment we apply: the whole spec stays (the comparer reads it), status is cut."""
    strip_metadata(obj)
    if "status" in obj:
        _set_or_drop(obj, "status", _pick(obj["status"], DEPLOYMENT_STATUS))
    return obj


def trim_statefulset(obj: JsonObject) -> JsonObject:
    strip_metadata(obj)
    _set_or_drop(obj, "spec", _pick(obj.get("spec"), STATEFULSET_SPEC))
    _set_or_drop(obj, "status", _pick(obj.get("status"), STATEFULSET_STATUS))
    return obj


def trim_pod(obj: JsonObject) -> JsonObject:
    strip_metadata(obj)
    obj.pop("spec", None)
    status = obj.get("status")
    kept: dict[str, Any] = {}
    if isinstance(status, Mapping):
        for key in POD_STATUS_LISTS:
            entries = status.get(key)
            if isinstance(entries, list):
                kept[key] = [_pick(entry, POD_CONTAINER_STATUS) for entry in entries]
    _set_or_drop(obj, "status", kept)
    return obj


def trim_event(obj: JsonObject) -> JsonObject:
    strip_metadata(obj)
    for key in [key for key in obj if key not in EVENT_FIELDS]:
        del obj[key]
    return obj


TRANSFORMS: Final[Mapping[ResourceKind, Transform]] = {
    DEPLOYMENTS: trim_deployment,
    STATEFULSETS: trim_statefulset,
    PODS: trim_pod,
    CORE_EVENTS: trim_event,
}
"""Per-kind transforms; the kinds we apply other than Deployments keep everything but metadata
noise, since the comparer reads their whole body and they carry no status worth cutting."""


def transform_for(kind: ResourceKind) -> Transform:
    """The transform the cache of `kind` applies to every object before storing it: its trim,
    then `share_strings`; changes `obj` in place and returns it."""
    trim = TRANSFORMS.get(kind, strip_metadata)

    def transform(obj: JsonObject) -> JsonObject:
        shared: JsonObject = share_strings(trim(obj))
        return shared

    return transform
