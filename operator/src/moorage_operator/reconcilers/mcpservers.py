"""The MCPServer reconciler: a thin I/O shell around `moorage_operator.planning.mcpservers`.

The loop is `ProxyOwnerReconciler`'s (`reconcilers/proxyowners.py`: parse, plan, apply the
children that differ, delete those no longer wanted, patch the status). What is an MCPServer's:

- its references (MCPToolConfig, ConfigMaps, MCPExternalAuthConfig, MCPGroup) read from the
  caches and handed to `plan_mcpserver`;
- its status from the plan and the cached Deployment, the StatefulSet the proxy runner creates,
  the server's pods and the StatefulSet controller's `FailedCreate` Events (a pod the apiserver
  refused).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from moorage_api.constants import LABEL_MCPSERVER
from moorage_api.mcpserver import MCPServer, parse_mcpserver
from moorage_core.kube import DEPLOYMENTS, MCPSERVERS, JsonObject, KubeClient, ResourceKind
from moorage_operator.planning.externalauth import external_auth_config_name_of
from moorage_operator.planning.mcpgroups import group_name_of
from moorage_operator.planning.mcpservers.children import (
    PlanningSettings,
    ServerPlan,
    plan_mcpserver,
)
from moorage_operator.planning.mcpservers.references import (
    References,
    config_map_names_of,
    tool_config_name_of,
)
from moorage_operator.planning.mcpservers.status import STATUS_FIELDS, Observed, compute_status
from moorage_operator.reconcilers.pending import PendingWrites
from moorage_operator.reconcilers.proxyowners import (
    CHILD_KINDS,
    Clock,
    ProxyOwnerReconciler,
    Written,
    utc_now,
)
from moorage_operator.runtime.cache import Cache
from moorage_operator.runtime.controller import Request
from moorage_operator.runtime.events import EventRecorder

__all__ = ["CHILD_KINDS", "MCPServerReconciler", "ServerCaches", "read_references", "utc_now"]


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


class MCPServerReconciler(ProxyOwnerReconciler[MCPServer, ServerPlan]):
    """Converges one MCPServer's children and status; see the module docstring."""

    kind: ClassVar[ResourceKind] = MCPSERVERS
    owner_label: ClassVar[str] = LABEL_MCPSERVER
    status_fields: ClassVar = STATUS_FIELDS

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
        super().__init__(
            kube,
            objects=caches.servers,
            owned=caches.owned,
            recorder=recorder,
            pending=pending,
            clock=clock,
        )
        self.settings = settings
        self.caches = caches

    def parse(self, raw: JsonObject) -> MCPServer:
        return parse_mcpserver(raw)

    def plan(self, owner: MCPServer, raw: JsonObject) -> ServerPlan:
        references = read_references(
            raw,
            tool_configs=self.caches.tool_configs,
            config_maps=self.caches.config_maps,
            external_auth_configs=self.caches.external_auth_configs,
            groups=self.caches.groups,
        )
        return plan_mcpserver(owner, settings=self.settings, references=references)

    def compute_status(
        self,
        owner: MCPServer,
        *,
        plan: ServerPlan | None,
        request: Request,
        written: Written,
        previous: Mapping[str, Any],
        now: str,
        retrying: str | None = None,
    ) -> JsonObject:
        return compute_status(
            owner,
            plan=plan or ServerPlan(),
            observed=self._observe(request, written) if plan is not None else Observed(),
            previous=previous,
            now=now,
            retrying=retrying,
            cluster_domain=self.settings.cluster_domain,
        )

    def _observe(self, request: Request, written: Written) -> Observed:
        namespace, name = request.namespace, request.name
        deployment = written.get(("Deployment", name)) or self.owned[DEPLOYMENTS].get(
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
