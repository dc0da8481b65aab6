"""A fake at the reconcilers' kube-client seam, and the objects the reconciler tests start from.

`RecordingKube` stands in for the `KubeClient` calls a reconciler makes (`apply`, `patch`,
`delete`, `create`, `list`, `get`). It records every call and answers the way the apiserver
answers a request that succeeds (an apply or a create returns the object sent, a patch returns
the object's name and what was patched), unless a test scripted an error for the next call of a
verb and kind. It decides nothing itself: which errors come back, and when, is the test's choice;
what the apiserver really decides is the integration suite's business.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from moorage_core.kube import JsonObject, ListResult, ResourceKind
from moorage_operator.runtime.cache import Cache
from moorage_operator.runtime.events import EventRecorder

NAMESPACE = "team-a"


@dataclass(frozen=True, slots=True)
class Call:
    """One request a reconciler sent."""

    verb: str
    kind: str
    name: str
    namespace: str | None
    body: Any = None
    subresource: str | None = None


class RecordingKube:
    """Records the reconcilers' requests; each answers as a success unless an error is scripted."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._errors: dict[tuple[str, str, str | None], list[BaseException]] = {}
        self.listed: dict[str, list[JsonObject]] = {}
        """What `list` returns, by kind (`MCPServer`, ...)."""
        self.stored: dict[tuple[str, str], JsonObject] = {}
        """What `get` returns, by (kind, name)."""

    def fail(
        self, verb: str, kind: str, *errors: BaseException, subresource: str | None = None
    ) -> None:
        """The next calls of `verb` on `kind` (and `subresource`) raise `errors`, in order."""
        self._errors.setdefault((verb, kind, subresource), []).extend(errors)

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        queued = self._errors.get((call.verb, call.kind, call.subresource))
        if queued:
            raise queued.pop(0)

    def writes(self, verb: str | None = None, *, kind: str | None = None) -> list[Call]:
        """The calls that write, optionally of one verb and one kind."""
        return [
            c
            for c in self.calls
            if c.verb in {"apply", "patch", "delete", "create"}
            and (verb is None or c.verb == verb)
            and (kind is None or c.kind == kind)
        ]

    def events(self) -> list[JsonObject]:
        """The Events created, oldest first."""
        return [c.body for c in self.calls if c.verb == "create" and c.kind == "Event"]

    async def apply(
        self,
        kind: ResourceKind,
        body: JsonObject,
        *,
        field_manager: str,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
        force: bool = True,
        dry_run: bool = False,
    ) -> JsonObject:
        obj_name = name or str(body["metadata"]["name"])
        self._record(
            Call("apply", kind.kind, obj_name, namespace, copy.deepcopy(body), subresource)
        )
        return copy.deepcopy(body)

    async def patch(
        self,
        kind: ResourceKind,
        body: Any,
        *,
        name: str,
        namespace: str | None = None,
        subresource: str | None = None,
        content_type: str = "",
        field_manager: str | None = None,
    ) -> JsonObject:
        self._record(Call("patch", kind.kind, name, namespace, copy.deepcopy(body), subresource))
        return {"metadata": {"name": name, "namespace": namespace}, **copy.deepcopy(body)}

    async def delete(
        self,
        kind: ResourceKind,
        *,
        name: str,
        namespace: str | None = None,
        propagation_policy: str | None = None,
        preconditions: JsonObject | None = None,
    ) -> JsonObject:
        self._record(Call("delete", kind.kind, name, namespace, preconditions))
        return {}

    async def create(
        self, kind: ResourceKind, body: JsonObject, *, namespace: str | None = None
    ) -> JsonObject:
        self._record(
            Call("create", kind.kind, str(body["metadata"]["name"]), namespace, copy.deepcopy(body))
        )
        return copy.deepcopy(body)

    async def list(
        self,
        kind: ResourceKind,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
        timeout: float = 60.0,
    ) -> ListResult:
        self._record(Call("list", kind.kind, "", namespace))
        return ListResult(items=copy.deepcopy(self.listed.get(kind.kind, [])), resource_version="1")

    async def get(
        self, kind: ResourceKind, *, name: str, namespace: str | None = None
    ) -> JsonObject:
        self._record(Call("get", kind.kind, name, namespace))
        return copy.deepcopy(self.stored[(kind.kind, name)])


def recorder(kube: RecordingKube) -> EventRecorder:
    """The real Event recorder, writing through the fake."""
    return EventRecorder(kube, reporting_instance="test")


def cache(kind: ResourceKind, objects: Iterable[JsonObject] = ()) -> Cache:
    """A cache of `kind` holding `objects`, as an informer would after its list."""
    filled = Cache(kind)
    for obj in objects:
        filled.upsert(copy.deepcopy(obj))
    return filled


def merged_status(status: Mapping[str, Any], patches: Iterable[Call]) -> dict[str, Any]:
    """`status` after the status merge patches `patches` (what the apiserver would store)."""
    result = copy.deepcopy(dict(status))
    for call in patches:
        for key, value in call.body["status"].items():
            if value is None:
                result.pop(key, None)
            else:
                result[key] = copy.deepcopy(value)
    return result


def with_status(obj: Mapping[str, Any], status: Mapping[str, Any]) -> dict[str, Any]:
    """`obj` as the next list or watch event shows it, with `status` stored."""
    stored = copy.deepcopy(dict(obj))
    stored["status"] = copy.deepcopy(dict(status))
    return stored


def stored_object(
    kind: str,
    name: str,
    *,
    finalizers: list[str] | None = None,
    deleting: bool = False,
    **body: Any,
) -> JsonObject:
    """A stored `moorage.dev` object of `kind` in NAMESPACE (with `finalizers`, being deleted)."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": NAMESPACE,
        "uid": f"{name}-uid",
        "generation": 1,
        "resourceVersion": "7",
    }
    if finalizers is not None:
        meta["finalizers"] = finalizers
    if deleting:
        meta["deletionTimestamp"] = "2026-01-02T03:00:00Z"
    return {"apiVersion": "moorage.dev/v1alpha1", "kind": kind, "metadata": meta, **body}
