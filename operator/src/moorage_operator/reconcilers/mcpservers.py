"""The MCPServer reconciler: a thin I/O shell around `moorage_operator.planning`.

One reconcile of `namespace/name`:
1. read the MCPServer from the cache (gone → done; GC removes the children);
2. an object that does not parse → status `Failed`, `TerminalError` (retried on its next change);
3. being deleted → status `Terminating`, nothing applied;
4. read its references (MCPToolConfig, ConfigMaps) from the caches and plan (pure);
5. server-side apply (field manager `moorage-operator`) every child whose cached copy does not
   already hold what we want — usually none — and delete children no longer wanted;
6. compute the status from the plan and the cached Deployment, StatefulSet, pods and the
   StatefulSet controller's `FailedCreate` Events (a pod the apiserver refused), and patch
   it only when it changed; record an Event when the phase changes or a failure is new;
7. a plan with problems (missing or unusable references, malformed pod template) or a child the
   apiserver rejects as invalid raises `TerminalError` after the status says why (`Failed`): a
   retry cannot fix it, a change of the server or of the watched reference re-enqueues it. Any
   other failed apply is retried with back-off, the status saying what is being retried.

Writes the caches have not caught up with are remembered (`PendingWrites`) so that a reconcile
right after another does not repeat them.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import structlog
from pydantic import ValidationError

from moorage_api.base import validation_messages
from moorage_api.constants import FIELD_MANAGER_OPERATOR, LABEL_MCPSERVER
from moorage_api.mcpserver import MCPServer, parse_mcpserver
from moorage_core.errors import BadRequest, Invalid, KubeError, NotFound
from moorage_core.kube import (
    CONFIGMAPS,
    DEPLOYMENTS,
    MCPSERVERS,
    MERGE_PATCH,
    ROLEBINDINGS,
    ROLES,
    SERVICEACCOUNTS,
    SERVICES,
    JsonObject,
    KubeClient,
    ResourceKind,
)
from moorage_operator.planning.comparing import (
    ANNOTATION_APPLIED_HASH,
    is_applied,
    takeover_patch,
)
from moorage_operator.planning.conditions import format_time
from moorage_operator.planning.externalauth import external_auth_config_name_of
from moorage_operator.planning.mcpgroups import group_name_of
from moorage_operator.planning.mcpservers.children import (
    PlanningSettings,
    ServerPlan,
    plan_mcpserver,
    stale_children,
)
from moorage_operator.planning.mcpservers.references import (
    Problem,
    References,
    config_map_names_of,
    tool_config_name_of,
)
from moorage_operator.planning.mcpservers.status import (
    STATUS_FIELDS,
    Observed,
    compute_invalid_status,
    compute_status,
    phase_event,
)
from moorage_operator.reconcilers.pending import PendingWrites
from moorage_operator.reconcilers.statuswrites import patch_status, previous_status
from moorage_operator.runtime.cache import Cache
from moorage_operator.runtime.controller import Request, Result, TerminalError
from moorage_operator.runtime.events import EventRecorder

log = structlog.get_logger(__name__)

CHILD_KINDS: Final[Mapping[tuple[str, str], ResourceKind]] = {
    (kind.api_version, kind.kind): kind
    for kind in (SERVICEACCOUNTS, ROLES, ROLEBINDINGS, CONFIGMAPS, DEPLOYMENTS, SERVICES)
}
"""The kinds the operator applies for an MCPServer, by (apiVersion, kind)."""

# Applied in two waves: what the proxy pod needs (its ServiceAccount, Role, RunConfig) before the
# Deployment, so the ReplicaSet controller does not fail and back off on a missing account; and
# the Role before its RoleBinding: without the `bind` verb the apiserver checks that we hold every
# permission of the Role a binding names, and a Role that does not exist yet fails that check.
_SECOND_WAVE: Final = frozenset({"RoleBinding", "Deployment", "Service"})

Clock = Callable[[], datetime.datetime]


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


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True, slots=True)
class ServerCaches:
    """The caches an MCPServer reconcile reads; filled by the manager's informers."""

    servers: Cache
    tool_configs: Cache
    config_maps: Cache
    """ConfigMaps the operator does not manage: the ones MCPServers reference."""
    owned: Mapping[ResourceKind, Cache]
    """Our children by kind (label `app.kubernetes.io/managed-by=moorage`), one per CHILD_KINDS."""
    statefulsets: Cache
    """StatefulSets with our labels (the proxy runner creates `<name>`)."""
    pods: Cache
    """Pods with our labels (proxy runner and MCP server pods)."""
    refusals: Cache
    """Core Events `FailedCreate` about StatefulSets (the apiserver refused a pod)."""
    external_auth_configs: Cache
    groups: Cache


class MCPServerReconciler:
    """Converges one MCPServer's children and status; see the module docstring."""

    def __init__(
        self,
        kube: KubeClient,
        *,
        settings: PlanningSettings,
        caches: ServerCaches,
        recorder: EventRecorder,
        pending: PendingWrites,
        clock: Clock = utc_now,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.caches = caches
        self.recorder = recorder
        self.pending = pending
        self.clock = clock

    async def reconcile(self, request: Request) -> Result:
        raw = self.caches.servers.get(request.name, namespace=request.namespace)
        if raw is None:
            return Result()
        previous = previous_status(raw, kind=MCPSERVERS, pending=self.pending)
        now = format_time(self.clock())
        try:
            server = parse_mcpserver(raw)
        except ValidationError as exc:
            message = "; ".join(validation_messages(exc))
            status = compute_invalid_status(raw, message=message, previous=previous, now=now)
            await self._write_status(raw, previous=previous, status=status)
            raise TerminalError(f"invalid MCPServer: {message}") from None
        if server.metadata.deletion_timestamp:
            status = compute_status(
                server,
                plan=ServerPlan(),
                observed=Observed(),
                previous=previous,
                now=now,
                cluster_domain=self.settings.cluster_domain,
            )
            await self._write_status(raw, previous=previous, status=status)
            return Result()

        plan = plan_mcpserver(server, settings=self.settings, references=self._references(raw))
        written: dict[tuple[str, str], JsonObject] = {}
        failure: ApplyFailure | None = None
        deleted = 0
        if not plan.problems:
            written, failure = await self._apply_children(raw, plan.children)
            if failure is None:
                deleted = await self._delete_stale(server, plan)
            elif failure.is_terminal:
                plan = replace(
                    plan,
                    problems=(Problem(None, "ApplyFailed", failure.message),),
                )
        status = compute_status(
            server,
            plan=plan,
            observed=self._observe(request, written),
            previous=previous,
            now=now,
            retrying=failure.message if failure is not None and not failure.is_terminal else None,
            cluster_domain=self.settings.cluster_domain,
        )
        status_written = await self._write_status(raw, previous=previous, status=status)
        log.debug(
            "mcpserver_reconciled",
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

    # -- reading ------------------------------------------------------------------------------

    def _references(self, raw: Mapping[str, Any]) -> References:
        return read_references(
            raw,
            tool_configs=self.caches.tool_configs,
            config_maps=self.caches.config_maps,
            external_auth_configs=self.caches.external_auth_configs,
            groups=self.caches.groups,
        )

    def _observe(self, request: Request, written: Mapping[tuple[str, str], JsonObject]) -> Observed:
        namespace, name = request.namespace, request.name
        deployment = written.get(("Deployment", name)) or self.caches.owned[DEPLOYMENTS].get(
            name, namespace=namespace
        )
        return Observed(
            deployment=deployment,
            statefulset=self.caches.statefulsets.get(name, namespace=namespace),
            pods=self.caches.pods.list(namespace=namespace, labels={LABEL_MCPSERVER: name}),
            refusals=[
                event
                for event in self.caches.refusals.list(namespace=namespace)
                if (event.get("involvedObject") or {}).get("name") == name
            ],
        )

    # -- writing ------------------------------------------------------------------------------

    def _needs_apply(self, child: JsonObject, kind: ResourceKind) -> bool:
        meta = child["metadata"]
        namespace, name = str(meta["namespace"]), str(meta["name"])
        remembered = self.pending.recall(kind, namespace=namespace, name=name)
        if remembered is not None and remembered == meta["annotations"][ANNOTATION_APPLIED_HASH]:
            return False
        return not is_applied(child, self.caches.owned[kind].get(name, namespace=namespace))

    async def _apply_children(
        self, server: Mapping[str, Any], children: Sequence[JsonObject]
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
                return results, await self._report_apply_failures(server, failures)
        return results, None

    async def _apply(self, child: JsonObject, kind: ResourceKind) -> JsonObject:
        meta = child["metadata"]
        live = self.caches.owned[kind].get(str(meta["name"]), namespace=str(meta["namespace"]))
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
        self, server: Mapping[str, Any], failures: Sequence[tuple[JsonObject, BaseException]]
    ) -> ApplyFailure:
        """Record an Event per failed apply; the first failure, for the status."""
        for child, error in failures:
            if not isinstance(error, KubeError):
                raise error  # a bug, not an API answer: let the worker log it with its traceback
            await self.recorder.record(
                server,
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

    async def _delete_stale(self, server: MCPServer, plan: ServerPlan) -> int:
        namespace = server.metadata.namespace or ""
        labels = {LABEL_MCPSERVER: server.metadata.name or ""}
        owned = [
            obj
            for cache in self.caches.owned.values()
            for obj in cache.list(namespace=namespace, labels=labels)
        ]
        stale = stale_children(server, desired=plan.children, owned=owned)
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
            MCPSERVERS,
            raw,
            previous=previous,
            status=status,
            fields=STATUS_FIELDS,
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
