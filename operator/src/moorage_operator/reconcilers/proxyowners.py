"""The reconcile loop shared by the kinds that run a proxy runner (MCPServer, MCPRemoteProxy).

One reconcile of `namespace/name`:
1. read the object from the cache (gone → done; GC removes the children);
2. an object that does not parse → status `Failed`, `TerminalError` (retried on its next change);
3. being deleted → status `Terminating`, nothing applied;
4. read its references from the caches and plan (pure; the kind's `plan`);
5. server-side apply (field manager `moorage-operator`) every child whose cached copy does not
   already hold what we want — usually none — and delete children no longer wanted;
6. compute the status from the plan and what runs (the kind's `observe` and `compute_status`),
   and patch it only when it changed; record an Event when the phase changes or a failure is new;
7. a plan with problems (missing or unusable references, malformed pod template) or a child the
   apiserver rejects as invalid raises `TerminalError` after the status says why (`Failed`): a
   retry cannot fix it, a change of the object or of the watched reference re-enqueues it. Any
   other failed apply is retried with back-off, the status saying what is being retried.

Writes the caches have not caught up with are remembered (`PendingWrites`) so that a reconcile
right after another does not repeat them. A kind plugs in by subclassing `ProxyOwnerReconciler`.
"""

from __future__ import annotations

import asyncio
import datetime
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Final, Generic, Protocol, TypeVar

import structlog
from pydantic import ValidationError

from moorage_api.base import validation_messages
from moorage_api.constants import FIELD_MANAGER_OPERATOR
from moorage_core import kube as kinds
from moorage_core.errors import BadRequest, Invalid, KubeError, NotFound
from moorage_core.kube import MERGE_PATCH, JsonObject, KubeClient, ResourceKind
from moorage_operator.planning.comparing import (
    ANNOTATION_APPLIED_HASH,
    is_applied,
    takeover_patch,
)
from moorage_operator.planning.conditions import format_time
from moorage_operator.planning.externalauth import external_auth_config_name_of
from moorage_operator.planning.mcpgroups import group_name_of
from moorage_operator.planning.mcpservers.children import PlanningSettings
from moorage_operator.planning.mcpservers.references import (
    References,
    config_map_names_of,
    tool_config_name_of,
)
from moorage_operator.planning.mcpservers.status import (
    Observed,
    compute_invalid_status,
    phase_event,
)
from moorage_operator.planning.problems import Problem
from moorage_operator.planning.proxies import stale_owned
from moorage_operator.reconcilers.pending import PendingWrites
from moorage_operator.reconcilers.statuswrites import patch_status, previous_status
from moorage_operator.runtime.cache import Cache
from moorage_operator.runtime.controller import Request, Result, TerminalError
from moorage_operator.runtime.events import EventRecorder

log = structlog.get_logger(__name__)

CHILD_KINDS: Final[Mapping[tuple[str, str], ResourceKind]] = {
    (kind.api_version, kind.kind): kind
    for kind in (
        kinds.SERVICEACCOUNTS,
        kinds.ROLES,
        kinds.ROLEBINDINGS,
        kinds.CONFIGMAPS,
        kinds.DEPLOYMENTS,
        kinds.SERVICES,
        kinds.PODDISRUPTIONBUDGETS,
    )
}
"""The kinds the operator applies for a proxy runner's owner, by (apiVersion, kind)."""

# Applied in two waves: what the proxy pod needs (its ServiceAccount, Role, RunConfig) before the
# Deployment, so the ReplicaSet controller does not fail and back off on a missing account; and
# the Role before its RoleBinding: without the `bind` verb the apiserver checks that we hold every
# permission of the Role a binding names, and a Role that does not exist yet fails that check.
_SECOND_WAVE: Final = frozenset({"RoleBinding", "Deployment", "Service", "PodDisruptionBudget"})

Clock = Callable[[], datetime.datetime]


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True, slots=True)
class ApplyFailure:
    """The apiserver refused a child."""

    message: str
    """A sentence naming the child and the apiserver's answer."""
    error: KubeError

    @property
    def is_terminal(self) -> bool:
        """The apiserver rejected the object itself: sending it again cannot succeed."""
        return isinstance(self.error, Invalid | BadRequest)


class OwnerPlan(Protocol):
    """What the loop reads of a kind's plan (a dataclass, so `problems` can be replaced)."""

    @property
    def children(self) -> tuple[JsonObject, ...]: ...

    @property
    def problems(self) -> tuple[Problem, ...]: ...


class OwnerModel(Protocol):
    """What the loop reads of a kind's parsed object."""

    @property
    def metadata(self) -> Any: ...


class OwnerCaches(Protocol):
    """The caches a proxy runner's owner is reconciled from; filled by the manager's informers."""

    @property
    def primary(self) -> Cache:
        """The owners themselves."""
        ...

    @property
    def tool_configs(self) -> Cache: ...

    @property
    def config_maps(self) -> Cache:
        """ConfigMaps the operator does not manage: the ones owners reference."""
        ...

    @property
    def external_auth_configs(self) -> Cache: ...

    @property
    def groups(self) -> Cache: ...

    @property
    def owned(self) -> Mapping[ResourceKind, Cache]:
        """Our children by kind (label `app.kubernetes.io/managed-by=moorage`), one per
        CHILD_KINDS."""
        ...

    @property
    def pods(self) -> Cache:
        """Pods with our labels (the proxy pods among them)."""
        ...


def _named(cache: Cache, name: str | None, *, namespace: str) -> JsonObject | None:
    return cache.get(name, namespace=namespace) if name else None


def read_references(
    raw: Mapping[str, Any],
    *,
    tool_configs: Cache,
    config_maps: Cache,
    external_auth_configs: Cache,
    groups: Cache,
) -> References:
    """What a raw MCPServer or MCPRemoteProxy references, as the caches hold it."""
    namespace = str((raw.get("metadata") or {}).get("namespace") or "")
    return References(
        tool_config=_named(tool_configs, tool_config_name_of(raw), namespace=namespace),
        config_maps={
            name: obj
            for name in config_map_names_of(raw)
            if (obj := config_maps.get(name, namespace=namespace)) is not None
        },
        external_auth_config=_named(
            external_auth_configs, external_auth_config_name_of(raw), namespace=namespace
        ),
        group=_named(groups, group_name_of(raw), namespace=namespace),
    )


OwnerT = TypeVar("OwnerT", bound=OwnerModel)
PlanT = TypeVar("PlanT", bound=OwnerPlan)
CachesT = TypeVar("CachesT", bound=OwnerCaches)
Written = Mapping[tuple[str, str], JsonObject]
"""Children applied in this reconcile, by (kind, name): fresher than the caches."""


class ProxyOwnerReconciler(ABC, Generic[OwnerT, PlanT, CachesT]):
    """Converges one object's children and status; see the module docstring."""

    kind: ClassVar[ResourceKind]
    """The primary kind (its status subresource is patched)."""
    owner_label: ClassVar[str]
    """The label naming the owner on each of its children."""
    status_fields: ClassVar[Sequence[str]]
    """Every status field the operator writes (and so may remove)."""

    def __init__(
        self,
        kube: KubeClient,
        *,
        settings: PlanningSettings,
        caches: CachesT,
        recorder: EventRecorder,
        pending: PendingWrites,
        clock: Clock = utc_now,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.caches = caches
        self.owned = caches.owned
        self.recorder = recorder
        self.pending = pending
        self.clock = clock

    # -- what a kind supplies -----------------------------------------------------------------

    @abstractmethod
    def parse(self, raw: JsonObject) -> OwnerT:
        """The object as its model; `ValidationError` when it does not parse."""

    @abstractmethod
    def plan(self, owner: OwnerT, references: References) -> PlanT:
        """Its children, or the problems that prevent building them (pure planning)."""

    @abstractmethod
    def compute_status(
        self,
        owner: OwnerT,
        *,
        plan: PlanT | None,
        request: Request,
        written: Written,
        previous: Mapping[str, Any],
        now: str,
        retrying: str | None = None,
    ) -> JsonObject:
        """The whole status; `plan` None while the object is being deleted (nothing planned)."""

    def observe_proxy(self, request: Request, *, deployment: str, written: Written) -> Observed:
        """The proxy Deployment `deployment` (as just applied, else as cached) and the owner's
        pods, for a kind whose Deployment alone decides readiness."""
        return Observed(
            deployment=written.get(("Deployment", deployment))
            or self.owned[kinds.DEPLOYMENTS].get(deployment, namespace=request.namespace),
            pods=self.caches.pods.list(
                namespace=request.namespace, labels={self.owner_label: request.name}
            ),
        )

    # -- the loop -------------------------------------------------------------------------------

    async def reconcile(self, request: Request) -> Result:
        raw = self.caches.primary.get(request.name, namespace=request.namespace)
        if raw is None:
            return Result()
        previous = previous_status(raw, kind=self.kind, pending=self.pending)
        now = format_time(self.clock())
        try:
            owner = self.parse(raw)
        except ValidationError as exc:
            message = "; ".join(validation_messages(exc))
            status = compute_invalid_status(
                raw, message=message, previous=previous, now=now, kind=self.kind.kind
            )
            await self._write_status(raw, previous=previous, status=status)
            raise TerminalError(f"invalid {self.kind.kind}: {message}") from None
        if owner.metadata.deletion_timestamp:
            status = self.compute_status(
                owner, plan=None, request=request, written={}, previous=previous, now=now
            )
            await self._write_status(raw, previous=previous, status=status)
            return Result()

        caches = self.caches
        references = read_references(
            raw,
            tool_configs=caches.tool_configs,
            config_maps=caches.config_maps,
            external_auth_configs=caches.external_auth_configs,
            groups=caches.groups,
        )
        plan = self.plan(owner, references)
        written: dict[tuple[str, str], JsonObject] = {}
        failure: ApplyFailure | None = None
        deleted = 0
        if not plan.problems:
            written, failure = await self._apply_children(raw, plan.children)
            if failure is None:
                deleted = await self._delete_stale(raw, plan.children)
            elif failure.is_terminal:
                plan = replace(  # type: ignore[type-var]
                    plan, problems=(Problem(None, "ApplyFailed", failure.message),)
                )
        status = self.compute_status(
            owner,
            plan=plan,
            request=request,
            written=written,
            previous=previous,
            now=now,
            retrying=failure.message if failure is not None and not failure.is_terminal else None,
        )
        status_written = await self._write_status(raw, previous=previous, status=status)
        log.debug(
            "owner_reconciled",
            kind=self.kind.kind,
            phase=status["phase"],
            applied=len(written),
            deleted=deleted,
            status_written=status_written,
        )
        if plan.problems:
            raise TerminalError("; ".join(p.message for p in plan.problems))
        if failure is not None:
            raise failure.error
        return Result()

    # -- writing ------------------------------------------------------------------------------

    def _needs_apply(self, child: JsonObject, kind: ResourceKind) -> bool:
        meta = child["metadata"]
        namespace, name = str(meta["namespace"]), str(meta["name"])
        remembered = self.pending.recall(kind, namespace=namespace, name=name)
        if remembered is not None and remembered == meta["annotations"][ANNOTATION_APPLIED_HASH]:
            return False
        return not is_applied(child, self.owned[kind].get(name, namespace=namespace))

    async def _apply_children(
        self, owner: Mapping[str, Any], children: Sequence[JsonObject]
    ) -> tuple[dict[tuple[str, str], JsonObject], ApplyFailure | None]:
        """Apply the children that differ from their cached copies; the results by (kind,
        name), and the first failure (the second wave is not tried after one)."""
        todo = [
            (child, kind)
            for child in children
            if self._needs_apply(child, kind := CHILD_KINDS[(child["apiVersion"], child["kind"])])
        ]
        results: dict[tuple[str, str], JsonObject] = {}
        for wave in (
            [item for item in todo if item[0]["kind"] not in _SECOND_WAVE],
            [item for item in todo if item[0]["kind"] in _SECOND_WAVE],
        ):
            if not wave:
                continue
            outcomes = await asyncio.gather(
                *(self._apply(child, kind) for child, kind in wave), return_exceptions=True
            )
            failures: list[tuple[JsonObject, BaseException]] = []
            for (child, _), outcome in zip(wave, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    failures.append((child, outcome))
                else:
                    results[(str(child["kind"]), str(child["metadata"]["name"]))] = outcome
            if failures:
                return results, await self._report_apply_failures(owner, failures)
        return results, None

    async def _apply(self, child: JsonObject, kind: ResourceKind) -> JsonObject:
        meta = child["metadata"]
        live = self.owned[kind].get(str(meta["name"]), namespace=str(meta["namespace"]))
        takeover = takeover_patch(child, live)
        if takeover is not None:
            # Entries someone else put in a list we own whole would survive the apply.
            await self.kube.patch(
                kind,
                takeover,
                name=str(meta["name"]),
                namespace=str(meta["namespace"]),
                content_type=MERGE_PATCH,
                field_manager=FIELD_MANAGER_OPERATOR,
            )
        result = await self.kube.apply(
            kind, child, field_manager=FIELD_MANAGER_OPERATOR, namespace=str(meta["namespace"])
        )
        self.pending.remember(
            kind,
            namespace=str(meta["namespace"]),
            name=str(meta["name"]),
            value=meta["annotations"][ANNOTATION_APPLIED_HASH],
        )
        log.debug("child_applied", kind=child["kind"], child=meta["name"])
        return result

    async def _report_apply_failures(
        self, owner: Mapping[str, Any], failures: Sequence[tuple[JsonObject, BaseException]]
    ) -> ApplyFailure:
        """Record an Event per failed apply; the first failure, for the status."""
        for child, error in failures:
            if not isinstance(error, KubeError):
                raise error  # a bug, not an API answer: let the worker log it with its traceback
            await self.recorder.record(
                owner,
                type_="Warning",
                reason="ApplyFailed",
                note=f"Could not apply {child['kind']} {child['metadata']['name']}: {error}",
                action="Apply",
            )
        child, error = failures[0]
        assert isinstance(error, KubeError)
        return ApplyFailure(
            message=f"Could not apply {child['kind']} {child['metadata']['name']}: {error}",
            error=error,
        )

    async def _delete_stale(self, raw: Mapping[str, Any], desired: Sequence[JsonObject]) -> int:
        meta = raw.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        labels = {self.owner_label: str(meta.get("name") or "")}
        owned = [
            obj
            for cache in self.owned.values()
            for obj in cache.list(namespace=namespace, labels=labels)
        ]
        stale = stale_owned(str(meta.get("uid") or ""), desired=desired, owned=owned)
        for obj in stale:
            kind = CHILD_KINDS[(obj["apiVersion"], obj["kind"])]
            name = str(obj["metadata"]["name"])
            try:
                await self.kube.delete(
                    kind,
                    name=name,
                    namespace=namespace,
                    preconditions={"uid": obj["metadata"].get("uid")},
                )
            except NotFound:
                continue
            log.debug("child_deleted", kind=obj["kind"], child=name)
        return len(stale)

    async def _write_status(
        self,
        raw: Mapping[str, Any],
        *,
        previous: Mapping[str, Any],
        status: Mapping[str, Any],
    ) -> list[str]:
        """Patch the status if it changed (and record the Event its change deserves); the
        fields written."""
        written = await patch_status(
            self.kube,
            self.kind,
            raw,
            previous=previous,
            status=status,
            fields=self.status_fields,
            pending=self.pending,
        )
        if not written:
            return []
        event = phase_event(previous, status)
        if event is not None:
            await self.recorder.record(
                raw,
                type_="Warning" if event.type == "Warning" else "Normal",
                reason=event.reason,
                note=event.note,
                action=event.action,
            )
        return written
