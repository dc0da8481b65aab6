"""Applies the MCP server's workload and keeps it applied: the proxy runner's small reconciler.

`WorkloadManager.apply_all()` server-side applies the StatefulSet, the headless Service, the
`mcp-<name>` Service and the egress NetworkPolicy (field manager `moorage-proxyrunner`, forced)
and deletes the ones the RunConfig no longer wants. `mcp-<name>` is the one name another
MCPServer's object may hold (server `a`'s proxy Service `mcp-a-proxy` is the `mcp-<name>` of a
server named `a-proxy`): a live object of that name made for another server is left alone. `run()` then watches them by name (and the MCP pods by label) and,
level-based, re-applies whatever was deleted or drifted from the desired object. Every watch names
its object (`metadata.name` field selector) where it can, so that the Role the operator gives the
proxy runner can list them by `resourceNames`. `wait_ready()`
bounds the wait for a ready StatefulSet and, on time-out, says why the pods are not ready.

I/O shell: what to apply and how to judge drift and readiness come from
`moorage_proxyrunner.workload.builders` (pure).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from dataclasses import dataclass

import structlog

from moorage_api.constants import LABEL_MANAGED_BY, LABEL_MCPSERVER, MANAGED_BY
from moorage_api.documents import DocumentError, OutboundNetwork, parse_permission_profile
from moorage_api.mcptenant import PodTemplateAllowances
from moorage_api.naming import (
    egress_policy_name,
    headless_service_name,
    mcp_service_name,
    stdio_pod_name,
)
from moorage_api.podsecurity import NO_ALLOWANCES, allowances_by_namespace, parse_tenants
from moorage_core.backoff import Backoff
from moorage_core.errors import KubeError, NotFound
from moorage_core.kube import (
    CONFIGMAPS,
    MCPTENANTS,
    NETWORKPOLICIES,
    PODS,
    SERVICES,
    STATEFULSETS,
    JsonObject,
    KubeClient,
    ResourceKind,
)
from moorage_core.watching import WatchedSet
from moorage_proxyrunner.workload.builders import (
    FIELD_MANAGER,
    DesiredWorkload,
    EgressRules,
    ProfileError,
    WorkloadSpec,
    build_label_selector,
    compute_egress,
    describe_pod_problems,
    has_drifted,
    is_statefulset_ready,
    needs_profile_document,
    profile_document_key,
)

log = structlog.get_logger(__name__)


HEAL_BACKOFF = Backoff(base=0.5, cap=30.0)
"""Waits between failed heals (API errors): 0.5 s doubling to 30 s."""


class WorkloadNotReady(Exception):
    """The StatefulSet did not become ready in time; `problems` say what the pods are doing."""

    def __init__(self, message: str, *, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems


@dataclass(frozen=True, slots=True)
class _Child:
    """One object the manager owns: its kind, name, desired body (None: must not exist), and
    the watch that mirrors it."""

    kind: ResourceKind
    name: str
    desired: JsonObject | None
    watched: WatchedSet
    shared_name: bool = False
    """Another MCPServer's object may hold the name; then it is neither taken over nor deleted."""


async def fetch_egress(kube: KubeClient, spec: WorkloadSpec) -> EgressRules | None:
    """Egress rules for the spec's permission profile, reading its ConfigMap when needed.

    Raises `ProfileError` naming the ConfigMap and key when it is missing or unusable.
    """
    profile = spec.permission_profile
    document: OutboundNetwork | None = None
    if profile is not None and needs_profile_document(profile):
        key = profile_document_key(profile)
        try:
            configmap = await kube.get(CONFIGMAPS, name=profile.name, namespace=spec.namespace)
        except NotFound:
            raise ProfileError(
                f"permission profile ConfigMap {profile.name!r} not found in namespace "
                f"{spec.namespace!r}"
            ) from None
        text = (configmap.get("data") or {}).get(key)
        if text is None:
            raise ProfileError(f"permission profile ConfigMap {profile.name!r} has no key {key!r}")
        try:
            document = parse_permission_profile(text, key=key).network.outbound
        except DocumentError as exc:
            raise ProfileError(f"permission profile ConfigMap {profile.name!r}: {exc}") from None
    egress = compute_egress(profile, document=document)
    if egress is not None and egress.ignored:
        log.warning(
            "permission_profile_fields_ignored",
            fields=list(egress.ignored),
            reason="a NetworkPolicy cannot express them",
        )
    return egress


async def fetch_allowances(kube: KubeClient, *, namespace: str) -> PodTemplateAllowances:
    """What the MCPTenants covering `namespace` allow, read from the apiserver (never from the
    RunConfig, which a namespace user can edit); `KubeError` when they cannot be listed."""
    listed = await kube.list(MCPTENANTS)
    tenants, problems = parse_tenants(listed.items)
    for problem in problems:
        log.warning("mcptenant_ignored", error=problem)
    return allowances_by_namespace(tenants).get(namespace, NO_ALLOWANCES)


def is_ours(obj: JsonObject, *, server: str) -> bool:
    """Whether a live object was made for MCPServer `server` by Moorage (safe to delete)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(LABEL_MCPSERVER) == server and labels.get(LABEL_MANAGED_BY) == MANAGED_BY


class WorkloadManager:
    """Applies `desired` for `spec` and heals it while `run()` runs."""

    def __init__(
        self,
        kube: KubeClient,
        *,
        spec: WorkloadSpec,
        desired: DesiredWorkload,
        backoff: Backoff = HEAL_BACKOFF,
    ) -> None:
        self._kube = kube
        self.spec = spec
        self._backoff = backoff
        self._dirty = asyncio.Event()
        namespace = spec.namespace

        def watch(kind: ResourceKind, name: str) -> WatchedSet:
            return WatchedSet(
                kube,
                kind,
                namespace=namespace,
                field_selector=f"metadata.name={name}",
                on_change=self._on_change,
            )

        self.statefulsets = watch(STATEFULSETS, spec.name)
        # A stdio server's only pod is followed by name too: its Role may then read and attach
        # to that one pod only. HTTP servers scale, and so do stdio servers whose proxies hold
        # Leases on their ordinals: their pods are followed by label.
        single = spec.is_stdio and spec.leased_ordinals is None
        self.pods = WatchedSet(
            kube,
            PODS,
            namespace=namespace,
            label_selector=build_label_selector(spec.name),
            field_selector=f"metadata.name={stdio_pod_name(spec.name)}" if single else None,
        )
        self._children = (
            _Child(STATEFULSETS, spec.name, desired.statefulset, self.statefulsets),
            _Child(
                SERVICES,
                headless_service_name(spec.name),
                desired.service,
                watch(SERVICES, headless_service_name(spec.name)),
            ),
            _Child(
                SERVICES,
                mcp_service_name(spec.name),
                desired.mcp_service,
                watch(SERVICES, mcp_service_name(spec.name)),
                shared_name=True,
            ),
            _Child(
                NETWORKPOLICIES,
                egress_policy_name(spec.name),
                desired.network_policy,
                watch(NETWORKPOLICIES, egress_policy_name(spec.name)),
            ),
        )

    # -- applying ------------------------------------------------------------------------

    async def apply_all(self) -> None:
        """Apply every wanted object and delete unwanted ones of ours; `KubeError` on failure."""
        for child in self._children:
            if child.desired is not None and not child.shared_name:
                await self._apply(child)
                continue
            live: JsonObject | None = None
            with contextlib.suppress(NotFound):
                live = await self._kube.get(
                    child.kind, name=child.name, namespace=self.spec.namespace
                )
            if child.desired is not None:
                if not self._is_taken(child, live):
                    await self._apply(child)
            elif live is not None and is_ours(live, server=self.spec.name):
                await self._delete(child)

    async def heal(self) -> int:
        """Re-apply what is missing or drifted, delete what should not exist; the write count.

        Level-based: it compares the watch caches with the desired objects, so calling it with
        nothing changed writes nothing.
        """
        writes = 0
        for child in self._children:
            live = child.watched.get(child.name)
            if child.desired is None:
                if live is not None and is_ours(live, server=self.spec.name):
                    await self._delete(child)
                    writes += 1
            elif self._is_taken(child, live):
                continue
            elif live is None or has_drifted(child.desired, live):
                log.info(
                    "workload_healing",
                    kind=child.kind.kind,
                    name=child.name,
                    reason="missing" if live is None else "drifted",
                )
                await self._apply(child)
                writes += 1
        return writes

    def _is_taken(self, child: _Child, live: JsonObject | None) -> bool:
        """Whether `live` holds a shared name for another server (and must be left alone)."""
        if not child.shared_name or live is None:
            return False
        labels = (live.get("metadata") or {}).get("labels") or {}
        if labels.get(LABEL_MCPSERVER) == self.spec.name:
            return False
        log.warning(
            "workload_name_taken",
            kind=child.kind.kind,
            name=child.name,
            holder=labels.get(LABEL_MCPSERVER),
            reason="another object has this name; it is not replaced",
        )
        return True

    async def _apply(self, child: _Child) -> None:
        assert child.desired is not None
        await self._kube.apply(
            child.kind,
            child.desired,
            field_manager=FIELD_MANAGER,
            namespace=self.spec.namespace,
        )
        log.info("workload_applied", kind=child.kind.kind, name=child.name)

    async def _delete(self, child: _Child) -> None:
        with contextlib.suppress(NotFound):
            await self._kube.delete(
                child.kind,
                name=child.name,
                namespace=self.spec.namespace,
                propagation_policy="Background",
            )
        log.info("workload_deleted", kind=child.kind.kind, name=child.name)

    def rescale(self, ordinals: int) -> None:
        """A stdio server's proxies are now `ordinals` (a live RunConfig change): run that many
        backend pods. Healing applies it; every proxy replica does the same, so they agree."""
        if self.spec.leased_ordinals is None or ordinals == self.spec.leased_ordinals:
            return
        self.spec = dataclasses.replace(self.spec, leased_ordinals=ordinals)
        child = self._children[0]
        assert child.desired is not None, "a stdio server always has its StatefulSet"
        desired = {**child.desired, "spec": {**child.desired["spec"], "replicas": ordinals}}
        self._children = (dataclasses.replace(child, desired=desired), *self._children[1:])
        log.info("workload_rescaled", replicas=ordinals)
        self._dirty.set()

    # -- watching and healing ------------------------------------------------------------

    def _on_change(self, type_: str, obj: JsonObject) -> None:
        self._dirty.set()

    async def run(self) -> None:
        """Watch the objects and the pods, healing on every change, until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            for child in self._children:
                tasks.create_task(child.watched.run(), name=f"watch {child.kind.plural}")
            tasks.create_task(self.pods.run(), name="watch pods")
            tasks.create_task(self._heal_forever(), name="heal workload")

    async def _heal_forever(self) -> None:
        for child in self._children:
            await child.watched.wait_until(lambda _objs: True)
        # Whatever changed between `apply_all()` and the first lists is healed now.
        self._dirty.set()
        failures = 0
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self.heal()
            except KubeError as exc:
                failures += 1
                delay = self._backoff.delay(failures)
                log.error("workload_heal_failed", error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                self._dirty.set()
            else:
                failures = 0

    # -- readiness -----------------------------------------------------------------------

    async def wait_ready(self, *, timeout: float) -> JsonObject:
        """The ready StatefulSet, or `WorkloadNotReady` after `timeout` seconds.

        Needs `run()` running (it feeds the caches this reads).
        """

        def ready(objs: list[JsonObject]) -> JsonObject | None:
            return next((o for o in objs if is_statefulset_ready(o)), None)

        try:
            async with asyncio.timeout(timeout):
                return await self.statefulsets.wait_until(ready)
        except TimeoutError:
            problems = describe_pod_problems(self.pods.snapshot())
            raise WorkloadNotReady(
                f"StatefulSet {self.spec.namespace}/{self.spec.name} was not ready after "
                f"{timeout:g}s",
                problems=problems,
            ) from None
