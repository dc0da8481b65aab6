"""The MCPRegistry reconciler: a thin I/O shell around `moorage_operator.planning.mcpregistries`.

One reconcile of `namespace/name`:
1. read the MCPRegistry from the cache (gone or being deleted → done: garbage collection
   removes the storage ConfigMap and the API through their owner references);
2. an object that does not parse → status `Failed`, `TerminalError` (retried on its next change);
3. converge the registry API: with `apiService.enabled`, server-side apply Deployment and
   Service `<name>-api` unless the cached copies already hold them; otherwise delete them;
4. decide whether to sync now (`planning.mcpregistries.scheduling`). A ConfigMap source is
   read from the cache and prepared (validated, filtered, rendered, size-checked) on every
   reconcile, which costs no request, so with `syncPolicy.automatic` a changed or fixed
   ConfigMap is a reason to sync; a git source is fetched only when the plan says so. The first
   git fetch of a spec sets phase `Syncing` first;
5. sync: fetch, validate, filter, render; apply the storage ConfigMap only when the rendered hash
   differs from the stored one (an unchanged source writes nothing); a failure keeps the stored
   data and is recorded in the status and an Event;
6. patch the status only when it changed; remove a handled `moorage.dev/sync=true` annotation;
7. requeue when the next sync (interval or retry) is due.

Writes the caches have not shown yet (status, children's applied hashes, the stored hash) are
remembered in `PendingWrites` until the informer reports the object again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from pydantic import ValidationError

from moorage_api.base import validation_messages
from moorage_api.constants import ANNOTATION_SYNC, FIELD_MANAGER_OPERATOR, SYNC_REQUESTED
from moorage_api.mcpregistry import (
    GitSource,
    MCPRegistry,
    MCPRegistryStatus,
    SyncStatus,
    parse_mcpregistry,
)
from moorage_api.naming import registry_api_name, registry_storage_configmap_name
from moorage_api.sources import SourcePolicy
from moorage_core.errors import NotFound
from moorage_core.kube import (
    CONFIGMAPS,
    DEPLOYMENTS,
    MCPREGISTRIES,
    MERGE_PATCH,
    SERVICES,
    JsonObject,
    KubeClient,
    ResourceKind,
)
from moorage_operator.planning.comparing import (
    ANNOTATION_APPLIED_HASH,
    is_applied,
    stamp_applied_hash,
)
from moorage_operator.planning.mcpregistries.apiservice import (
    desired_api_deployment,
    desired_api_service,
    is_deployment_ready,
)
from moorage_operator.planning.mcpregistries.children import Owner
from moorage_operator.planning.mcpregistries.formats import RegistryError, RegistryFormatError
from moorage_operator.planning.mcpregistries.scheduling import (
    SyncReason,
    SyncState,
    format_timestamp,
    jitter_for,
    parse_timestamp,
    plan_sync,
)
from moorage_operator.planning.mcpregistries.status import (
    ApiState,
    SyncFailed,
    SyncOutcome,
    SyncStarted,
    SyncSucceeded,
    api_endpoint,
    compute_status,
)
from moorage_operator.planning.mcpregistries.storage import (
    RenderedRegistry,
    check_fits,
    desired_storage_configmap,
    prepare_registry,
    render_sync_metadata,
    stored_hash,
)
from moorage_operator.planning.mcpservers.children import is_controlled_by
from moorage_operator.reconcilers.fetching import (
    Fetched,
    SourceError,
    fetch_git,
    fetch_git_password,
    read_configmap_source,
)
from moorage_operator.reconcilers.pending import PendingWrites
from moorage_operator.reconcilers.statuswrites import patch_status, previous_status
from moorage_operator.registrysettings import RegistrySettings
from moorage_operator.runtime.cache import Cache
from moorage_operator.runtime.controller import Request, Result, TerminalError
from moorage_operator.runtime.events import EventRecorder

log = structlog.get_logger(__name__)

STATUS_FIELDS = ("phase", "syncStatus", "apiStatus", "observedGeneration", "conditions")
"""The status fields this reconciler owns (all of them)."""


class GitFetcher(Protocol):
    """`fetching.fetch_git`'s signature (a seam for tests)."""

    def __call__(
        self, source: GitSource, *, password: str | None, timeout: float, policy: SourcePolicy
    ) -> Awaitable[Fetched]: ...


@dataclass(frozen=True, slots=True)
class RegistryCaches:
    """The caches a reconcile reads; filled by the manager's informers."""

    registries: Cache
    source_config_maps: Cache
    """ConfigMaps the operator does not manage: where ConfigMap sources live."""
    storage_config_maps: Cache
    """ConfigMaps the operator manages (label `app.kubernetes.io/managed-by=moorage`)."""
    deployments: Cache
    services: Cache


@dataclass(frozen=True, slots=True)
class Prepared:
    """A source read and rendered, ready to store."""

    fetched: Fetched
    rendered: RenderedRegistry


@dataclass(frozen=True, slots=True)
class _Memo:
    """A ConfigMap source prepared once for (resourceVersion, generation)."""

    version: tuple[str, int]
    result: Prepared | SyncFailed


def _failure(
    error: SourceError | RegistryError, *, fetched: Fetched | None, fmt: str
) -> SyncFailed:
    """The status message of a failed sync: where, then what."""
    if fetched is None or isinstance(error, SourceError):
        return SyncFailed(str(error))
    if isinstance(error, RegistryFormatError):
        return SyncFailed(f"the registry in {fetched.origin} is not valid {fmt} data: {error}")
    return SyncFailed(f"{fetched.origin}: {error}")


class MCPRegistryReconciler:
    """Syncs one MCPRegistry and runs its API; see the module docstring."""

    def __init__(
        self,
        kube: KubeClient,
        *,
        caches: RegistryCaches,
        settings: RegistrySettings,
        recorder: EventRecorder,
        pending: PendingWrites,
        clock: Callable[[], float] = time.time,
        git_fetcher: GitFetcher = fetch_git,
    ) -> None:
        self.kube = kube
        self.caches = caches
        self.settings = settings
        self.recorder = recorder
        self.pending = pending
        self.clock = clock
        """Wall-clock seconds (status times are wall-clock)."""
        self.git_fetcher = git_fetcher
        self._memo: dict[tuple[str, str], _Memo] = {}

    # -- the reconcile ------------------------------------------------------------------------

    async def reconcile(self, request: Request) -> Result:
        key = (request.namespace, request.name)
        raw = self.caches.registries.get(request.name, namespace=request.namespace)
        if raw is None:
            self._memo.pop(key, None)
            return Result()
        meta = raw.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return Result()
        previous_raw = self._previous_status(raw)
        previous = _parse_status(previous_raw)
        now = self.clock()
        stamp = format_timestamp(now)
        generation = int(meta.get("generation") or 0)
        try:
            registry = parse_mcpregistry(raw)
        except ValidationError as exc:
            message = "invalid MCPRegistry: " + "; ".join(validation_messages(exc))
            await self._fail_invalid(raw, previous_raw, previous, message, generation, stamp)
            raise TerminalError(message) from None

        owner = Owner.of(raw)
        api = await self._converge_api(registry, owner)
        stored = self._stored_hash(owner)
        prepared = self._prepare_configmap(registry, key=key)
        requested = (meta.get("annotations") or {}).get(ANNOTATION_SYNC) == SYNC_REQUESTED
        plan = plan_sync(
            self._state(registry, previous, stored=stored, prepared=prepared, requested=requested),
            now=now,
            backoff=self.settings.backoff,
        )

        status, outcome = previous, None
        if plan.sync:
            log.debug("registry_sync_started", reason=plan.reason)
            if prepared is None and plan.reason == SyncReason.SPEC_CHANGED:
                # A first git fetch (of this spec) can take a while: say so first. Periodic
                # syncs and retries keep the phase they have.
                syncing = compute_status(
                    previous, generation=generation, now=stamp, outcome=SyncStarted(), api=api
                )
                previous_raw = await self._write_status(raw, previous_raw, syncing) or previous_raw
                previous = _parse_status(previous_raw)
            outcome, changed = await self._sync(
                registry, owner, stored=stored, prepared=prepared, stamp=stamp
            )
            if isinstance(outcome, SyncSucceeded) and changed:
                stored = outcome.hash
            await self._record_event(raw, outcome, changed=changed)
        status = compute_status(
            previous, generation=generation, now=stamp, outcome=outcome, api=api
        )
        await self._write_status(raw, previous_raw, status)
        if requested:
            await self._clear_request(registry)
        if plan.sync:
            log.info(
                "registry_synced" if isinstance(outcome, SyncSucceeded) else "registry_sync_failed",
                reason=plan.reason,
                message=outcome.message if outcome else None,
            )
            # What comes next follows from the new status.
            plan = plan_sync(
                self._state(registry, status, stored=stored, prepared=None, requested=False),
                now=now,
                backoff=self.settings.backoff,
            )
        return Result(requeue_after=plan.requeue_after)

    # -- reading ------------------------------------------------------------------------------

    def _previous_status(self, raw: Mapping[str, Any]) -> Mapping[str, Any]:
        return previous_status(raw, kind=MCPREGISTRIES, pending=self.pending)

    def _stored_hash(self, owner: Owner) -> str | None:
        name = registry_storage_configmap_name(owner.name)
        remembered = self.pending.recall(CONFIGMAPS, namespace=owner.namespace, name=name)
        if isinstance(remembered, str):
            return remembered
        return stored_hash(self.caches.storage_config_maps.get(name, namespace=owner.namespace))

    def _prepare_configmap(
        self, registry: MCPRegistry, *, key: tuple[str, str]
    ) -> Prepared | SyncFailed | None:
        """A ConfigMap source read from the cache and rendered (None for other sources);
        remembered per ConfigMap version and registry generation, so repeated reconciles do not
        parse the same document again."""
        source = registry.spec.source.config_map
        if source is None:
            return None
        namespace = key[0]
        configmap = self.caches.source_config_maps.get(source.name, namespace=namespace)
        version = (
            str((configmap or {}).get("metadata", {}).get("resourceVersion") or ""),
            int(registry.metadata.generation or 0),
        )
        memo = self._memo.get(key)
        if memo is not None and memo.version == version:
            return memo.result
        fetched: Fetched | None = None
        result: Prepared | SyncFailed
        try:
            fetched = read_configmap_source(configmap, source=source, namespace=namespace)
            rendered = prepare_registry(
                fetched.content, fmt=registry.spec.source.format, selection=registry.spec.filter
            )
            # Refused here rather than when storing: a failure decided before syncing is
            # reported once, not retried on every reconcile.
            check_fits(rendered, source=fetched.source)
            result = Prepared(fetched, rendered)
        except (SourceError, RegistryError) as exc:
            result = _failure(exc, fetched=fetched, fmt=registry.spec.source.format)
        self._memo[key] = _Memo(version, result)
        return result

    def _state(
        self,
        registry: MCPRegistry,
        status: MCPRegistryStatus,
        *,
        stored: str | None,
        prepared: Prepared | SyncFailed | None,
        requested: bool,
    ) -> SyncState:
        sync = status.sync_status or SyncStatus()
        failures = sync.attempt_count or 0
        policy = registry.spec.sync_policy
        # Only automatic registries follow their ConfigMap; a manual one waits for a request.
        source_changed = False
        if policy.automatic and isinstance(prepared, Prepared):
            source_changed = prepared.rendered.hash != stored or failures > 0
        elif policy.automatic and isinstance(prepared, SyncFailed):
            source_changed = failures == 0 or prepared.message != sync.message
        return SyncState(
            generation=int(registry.metadata.generation or 0),
            observed_generation=status.observed_generation,
            requested=requested,
            automatic=policy.automatic,
            interval=self.settings.interval(policy),
            last_attempt=parse_timestamp(sync.last_attempt),
            failures=failures,
            has_data=sync.last_sync_hash is not None and sync.last_sync_hash == stored,
            source_changed=source_changed,
            retry_helps=registry.spec.source.type == "git",
            jitter=jitter_for(registry.metadata.uid or ""),
        )

    # -- syncing ------------------------------------------------------------------------------

    async def _fetch(self, registry: MCPRegistry) -> Fetched:
        git = registry.spec.source.git
        assert git is not None
        password = None
        if git.auth is not None:
            password = await fetch_git_password(
                self.kube,
                namespace=registry.metadata.namespace or "",
                ref=git.auth.password_secret_ref,
            )
        return await self.git_fetcher(
            git,
            password=password,
            timeout=self.settings.git_timeout,
            policy=self.settings.source_policy,
        )

    async def _sync(
        self,
        registry: MCPRegistry,
        owner: Owner,
        *,
        stored: str | None,
        prepared: Prepared | SyncFailed | None,
        stamp: str,
    ) -> tuple[SyncOutcome, bool]:
        """Fetch (unless prepared), store if changed; the outcome and whether storage changed."""
        if isinstance(prepared, SyncFailed):
            return prepared, False
        fmt = registry.spec.source.format
        fetched = prepared.fetched if prepared else None
        try:
            if prepared is None:
                fetched = await self._fetch(registry)
                rendered = prepare_registry(
                    fetched.content, fmt=fmt, selection=registry.spec.filter
                )
            else:
                rendered = prepared.rendered
            assert fetched is not None
            changed = rendered.hash != stored
            if changed:
                metadata_json = render_sync_metadata(
                    rendered, timestamp=stamp, source=fetched.source
                )
                configmap = desired_storage_configmap(owner, rendered, metadata_json=metadata_json)
                await self._store(configmap, owner=owner, digest=rendered.hash)
        except (SourceError, RegistryError) as exc:
            return _failure(exc, fetched=fetched, fmt=fmt), False
        noun = "server" if rendered.server_count == 1 else "servers"
        message = f"Synced {rendered.server_count} {noun} from {fetched.origin}"
        return SyncSucceeded(rendered.hash, rendered.server_count, message), changed

    async def _store(self, configmap: JsonObject, *, owner: Owner, digest: str) -> None:
        name = str(configmap["metadata"]["name"])
        await self.kube.apply(
            CONFIGMAPS,
            configmap,
            field_manager=FIELD_MANAGER_OPERATOR,
            namespace=owner.namespace,
        )
        self.pending.remember(CONFIGMAPS, namespace=owner.namespace, name=name, value=digest)
        log.debug("registry_stored", configmap=name, hash=digest)

    # -- the API ------------------------------------------------------------------------------

    async def _converge_api(self, registry: MCPRegistry, owner: Owner) -> ApiState | None:
        name = registry_api_name(owner.name)
        caches: tuple[tuple[ResourceKind, Cache], ...] = (
            (DEPLOYMENTS, self.caches.deployments),
            (SERVICES, self.caches.services),
        )
        if not registry.spec.api_service.enabled:
            for kind, cache in caches:
                obj = cache.get(name, namespace=owner.namespace)
                if obj is not None and is_controlled_by(obj, uid=owner.uid):
                    await self._delete(kind, obj)
            return None
        deployment = stamp_applied_hash(
            desired_api_deployment(owner, image=self.settings.api_image)
        )
        service = stamp_applied_hash(desired_api_service(owner))
        live_deployment = self.caches.deployments.get(name, namespace=owner.namespace)
        for (kind, cache), desired in zip(caches, (deployment, service), strict=True):
            if self._needs_apply(desired, kind, cache):
                result = await self.kube.apply(
                    kind, desired, field_manager=FIELD_MANAGER_OPERATOR, namespace=owner.namespace
                )
                self.pending.remember(
                    kind,
                    namespace=owner.namespace,
                    name=name,
                    value=desired["metadata"]["annotations"][ANNOTATION_APPLIED_HASH],
                )
                log.debug("child_applied", kind=desired["kind"], child=name)
                if kind is DEPLOYMENTS:
                    live_deployment = result
        return ApiState(
            endpoint=api_endpoint(owner.name, namespace=owner.namespace),
            ready=is_deployment_ready(live_deployment),
        )

    def _needs_apply(self, desired: JsonObject, kind: ResourceKind, cache: Cache) -> bool:
        meta = desired["metadata"]
        namespace, name = str(meta["namespace"]), str(meta["name"])
        remembered = self.pending.recall(kind, namespace=namespace, name=name)
        if remembered is not None and remembered == meta["annotations"][ANNOTATION_APPLIED_HASH]:
            return False
        return not is_applied(desired, cache.get(name, namespace=namespace))

    async def _delete(self, kind: ResourceKind, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        try:
            await self.kube.delete(
                kind,
                name=str(meta.get("name")),
                namespace=str(meta.get("namespace")),
                preconditions={"uid": meta.get("uid")},
            )
        except NotFound:
            return
        log.debug("child_deleted", kind=obj.get("kind"), child=meta.get("name"))

    # -- writing status and metadata ----------------------------------------------------------

    async def _write_status(
        self, raw: Mapping[str, Any], previous: Mapping[str, Any], status: MCPRegistryStatus
    ) -> Mapping[str, Any] | None:
        """Patch the status if it changed; the stored status, or None when nothing was written."""
        written = await patch_status(
            self.kube,
            MCPREGISTRIES,
            raw,
            previous=previous,
            status=status.model_dump(by_alias=True, exclude_none=True),
            fields=STATUS_FIELDS,
            pending=self.pending,
        )
        if not written:
            return None
        return previous_status(raw, kind=MCPREGISTRIES, pending=self.pending)

    async def _fail_invalid(
        self,
        raw: Mapping[str, Any],
        previous_raw: Mapping[str, Any],
        previous: MCPRegistryStatus,
        message: str,
        generation: int,
        stamp: str,
    ) -> None:
        sync = previous.sync_status or SyncStatus()
        if previous.observed_generation == generation and sync.message == message:
            return  # already reported for this generation
        status = compute_status(
            previous, generation=generation, now=stamp, outcome=SyncFailed(message), api=None
        )
        await self._write_status(raw, previous_raw, status)
        await self.recorder.record(
            raw, type_="Warning", reason="InvalidSpec", note=message, action="Sync"
        )

    async def _clear_request(self, registry: MCPRegistry) -> None:
        """Remove `moorage.dev/sync=true` now that the sync it asked for ran."""
        try:
            await self.kube.patch(
                MCPREGISTRIES,
                {"metadata": {"annotations": {ANNOTATION_SYNC: None}}},
                name=registry.metadata.name or "",
                namespace=registry.metadata.namespace,
                content_type=MERGE_PATCH,
                field_manager=FIELD_MANAGER_OPERATOR,
            )
        except NotFound:
            return

    async def _record_event(
        self, raw: Mapping[str, Any], outcome: SyncOutcome, *, changed: bool
    ) -> None:
        if isinstance(outcome, SyncFailed):
            await self.recorder.record(
                raw, type_="Warning", reason="SyncFailed", note=outcome.message, action="Sync"
            )
        elif isinstance(outcome, SyncSucceeded) and changed:
            await self.recorder.record(
                raw, type_="Normal", reason="Synced", note=outcome.message, action="Sync"
            )


def _parse_status(raw: Mapping[str, Any]) -> MCPRegistryStatus:
    """The status as our model; a status we cannot read counts as empty (we rewrite it)."""
    try:
        return MCPRegistryStatus.model_validate(dict(raw))
    except ValidationError:
        return MCPRegistryStatus()
