"""The MCPRemoteProxy reconciler: a thin I/O shell around `planning.mcpremoteproxies`.

The loop is `ProxyOwnerReconciler`'s (`reconcilers/proxyowners.py`). What is a remote proxy's:

- its references (MCPToolConfig, ConfigMaps, MCPExternalAuthConfig, MCPGroup) read from the
  caches, as an MCPServer's are, and handed to `plan_mcpremoteproxy`;
- its status from the plan, the cached proxy Deployment `<name>-remote-proxy` and its pods, and
  `status.remoteCheck` (which the proxy runner writes; the operator only reads it: it is not one
  of the status fields patched, and the informer passes status-only changes on like any other,
  so a new check reaches the reconcile that derives `RemoteAvailable` from it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from moorage_api.constants import LABEL_MCPREMOTEPROXY
from moorage_api.mcpremoteproxy import MCPRemoteProxy, parse_mcpremoteproxy
from moorage_api.naming import remote_proxy_name
from moorage_core.kube import MCPREMOTEPROXIES, JsonObject, ResourceKind
from moorage_operator.planning.mcpremoteproxies.children import RemoteProxyPlan, plan_mcpremoteproxy
from moorage_operator.planning.mcpremoteproxies.status import STATUS_FIELDS, compute_remote_status
from moorage_operator.planning.mcpservers.references import References
from moorage_operator.planning.mcpservers.status import Observed
from moorage_operator.reconcilers.proxyowners import ProxyOwnerReconciler, Written
from moorage_operator.runtime.cache import Cache
from moorage_operator.runtime.controller import Request


@dataclass(frozen=True, slots=True)
class RemoteProxyCaches:
    """The caches an MCPRemoteProxy reconcile reads; filled by the manager's informers."""

    remote_proxies: Cache
    tool_configs: Cache
    config_maps: Cache
    """ConfigMaps the operator does not manage: the ones proxies reference."""
    external_auth_configs: Cache
    groups: Cache
    owned: Mapping[ResourceKind, Cache]
    """Our children by kind (label `app.kubernetes.io/managed-by=moorage`), one per CHILD_KINDS."""
    pods: Cache
    """Pods with our labels (the proxy pods among them)."""

    @property
    def primary(self) -> Cache:
        return self.remote_proxies


class MCPRemoteProxyReconciler(
    ProxyOwnerReconciler[MCPRemoteProxy, RemoteProxyPlan, RemoteProxyCaches]
):
    """Converges one MCPRemoteProxy's children and status; see the module docstring."""

    kind: ClassVar[ResourceKind] = MCPREMOTEPROXIES
    owner_label: ClassVar[str] = LABEL_MCPREMOTEPROXY
    status_fields: ClassVar = STATUS_FIELDS

    def parse(self, raw: JsonObject) -> MCPRemoteProxy:
        return parse_mcpremoteproxy(raw)

    def plan(self, owner: MCPRemoteProxy, references: References) -> RemoteProxyPlan:
        return plan_mcpremoteproxy(owner, settings=self.settings, references=references)

    def compute_status(
        self,
        owner: MCPRemoteProxy,
        *,
        plan: RemoteProxyPlan | None,
        request: Request,
        written: Written,
        previous: Mapping[str, Any],
        now: str,
        retrying: str | None = None,
    ) -> JsonObject:
        observed = self.observe_proxy(
            request, deployment=remote_proxy_name(request.name), written=written
        )
        return compute_remote_status(
            owner,
            plan=plan,
            observed=observed if plan is not None else Observed(),
            previous=previous,
            now=now,
            retrying=retrying,
            cluster_domain=self.settings.cluster_domain,
        )
