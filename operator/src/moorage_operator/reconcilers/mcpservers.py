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
from moorage_core.kube import DEPLOYMENTS, MCPSERVERS, JsonObject, ResourceKind
from moorage_operator.planning.mcpservers.children import ServerPlan, plan_mcpserver
from moorage_operator.planning.mcpservers.references import References
from moorage_operator.planning.mcpservers.status import STATUS_FIELDS, Observed, compute_status
from moorage_operator.reconcilers.proxyowners import (
    CHILD_KINDS,
    ProxyOwnerReconciler,
    Written,
    utc_now,
)
from moorage_operator.runtime.cache import Cache
from moorage_operator.runtime.controller import Request

__all__ = ["CHILD_KINDS", "MCPServerReconciler", "ServerCaches", "utc_now"]


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

    @property
    def primary(self) -> Cache:
        return self.servers


class MCPServerReconciler(ProxyOwnerReconciler[MCPServer, ServerPlan, ServerCaches]):
    """Converges one MCPServer's children and status; see the module docstring."""

    kind: ClassVar[ResourceKind] = MCPSERVERS
    owner_label: ClassVar[str] = LABEL_MCPSERVER
    status_fields: ClassVar = STATUS_FIELDS

    def parse(self, raw: JsonObject) -> MCPServer:
        return parse_mcpserver(raw)

    def plan(self, owner: MCPServer, references: References) -> ServerPlan:
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
