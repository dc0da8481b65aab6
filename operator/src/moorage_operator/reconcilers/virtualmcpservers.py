"""The VirtualMCPServer reconciler: a thin I/O shell around `planning.virtualmcpservers`.

The loop is `ProxyOwnerReconciler`'s (`reconcilers/proxyowners.py`). What is a virtual server's:

- its group and the group's members (MCPServers and MCPRemoteProxies, from their caches' group
  index), the MCPToolConfigs and MCPExternalAuthConfigs its backends use and the ConfigMaps its
  `incomingAuth` names, read from the caches and handed to `plan_virtualmcpserver`;
- its status from the plan, the cached aggregator Deployment `<name>-vmcp` and its pods, and
  `status.backendHealth`/`status.unresolvedConflicts` (which the aggregator writes; the
  operator only reads them, and the informer passes status-only changes on, so a new report
  reaches the reconcile that derives `discoveredBackends` and the conditions from it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from moorage_api.constants import LABEL_VIRTUALMCPSERVER
from moorage_api.naming import vmcp_name
from moorage_api.virtualmcpserver import VirtualMCPServer, parse_virtualmcpserver
from moorage_core.kube import VIRTUALMCPSERVERS, JsonObject, ResourceKind
from moorage_operator.planning.mcpservers.references import References, config_map_names_of
from moorage_operator.planning.mcpservers.status import Observed
from moorage_operator.planning.virtualmcpservers.backends import group_members
from moorage_operator.planning.virtualmcpservers.children import (
    GroupView,
    VirtualServerPlan,
    plan_virtualmcpserver,
)
from moorage_operator.planning.virtualmcpservers.status import STATUS_FIELDS, compute_vmcp_status
from moorage_operator.reconcilers.mcpgroups import GROUP_INDEX
from moorage_operator.reconcilers.proxyowners import ProxyOwnerReconciler, Written
from moorage_operator.runtime.cache import Cache
from moorage_operator.runtime.controller import Request


def incoming_config_map_names(obj: Mapping[str, Any]) -> list[str]:
    """The ConfigMaps a raw VirtualMCPServer's `incomingAuth` names."""
    spec = obj.get("spec")
    incoming = spec.get("incomingAuth") if isinstance(spec, Mapping) else None
    return config_map_names_of({"spec": incoming}) if isinstance(incoming, Mapping) else []


@dataclass(frozen=True, slots=True)
class VirtualServerCaches:
    """The caches a VirtualMCPServer reconcile reads; filled by the manager's informers."""

    virtual_servers: Cache
    groups: Cache
    servers: Cache
    """MCPServers, with the GROUP_INDEX index."""
    remote_proxies: Cache
    """MCPRemoteProxies, with the GROUP_INDEX index."""
    tool_configs: Cache
    external_auth_configs: Cache
    config_maps: Cache
    """ConfigMaps the operator does not manage."""
    owned: Mapping[ResourceKind, Cache]
    pods: Cache

    @property
    def primary(self) -> Cache:
        return self.virtual_servers


def _found(cache: Cache, names: Iterable[str], *, namespace: str) -> dict[str, JsonObject]:
    return {
        name: obj
        for name in dict.fromkeys(names)
        if (obj := cache.get(name, namespace=namespace)) is not None
    }


class VirtualMCPServerReconciler(
    ProxyOwnerReconciler[VirtualMCPServer, VirtualServerPlan, VirtualServerCaches]
):
    """Converges one VirtualMCPServer's children and status; see the module docstring."""

    kind: ClassVar[ResourceKind] = VIRTUALMCPSERVERS
    owner_label: ClassVar[str] = LABEL_VIRTUALMCPSERVER
    status_fields: ClassVar = STATUS_FIELDS

    def parse(self, raw: JsonObject) -> VirtualMCPServer:
        return parse_virtualmcpserver(raw)

    def read_group(self, server: VirtualMCPServer, *, group: JsonObject | None) -> GroupView:
        """The group's members and everything the backends reference, from the caches."""
        namespace = server.metadata.namespace or ""
        key = f"{namespace}/{server.spec.group_ref.name}"
        members = group_members(
            servers=self.caches.servers.by_index(GROUP_INDEX, key),
            remote_proxies=self.caches.remote_proxies.by_index(GROUP_INDEX, key),
            cluster_domain=self.settings.cluster_domain,
        )
        auth_names = [
            ref.external_auth_config_ref.name for ref in server.spec.outgoing_auth.backends.values()
        ]
        auth_names += [
            m.external_auth_config_ref.name for m in members if m.external_auth_config_ref
        ]
        incoming = server.spec.incoming_auth.model_dump(mode="json", by_alias=True)
        return GroupView(
            group=group,
            members=members,
            tool_configs=_found(
                self.caches.tool_configs,
                (ref.name for ref in server.spec.tool_configs.values()),
                namespace=namespace,
            ),
            external_auth_configs=_found(
                self.caches.external_auth_configs, auth_names, namespace=namespace
            ),
            config_maps=_found(
                self.caches.config_maps,
                incoming_config_map_names({"spec": {"incomingAuth": incoming}}),
                namespace=namespace,
            ),
        )

    def plan(self, owner: VirtualMCPServer, references: References) -> VirtualServerPlan:
        # The loop's references of a virtual server hold only its group (`spec.groupRef`).
        return plan_virtualmcpserver(
            owner, settings=self.settings, view=self.read_group(owner, group=references.group)
        )

    def compute_status(
        self,
        owner: VirtualMCPServer,
        *,
        plan: VirtualServerPlan | None,
        request: Request,
        written: Written,
        previous: Mapping[str, Any],
        now: str,
        retrying: str | None = None,
    ) -> JsonObject:
        observed = self.observe_proxy(request, deployment=vmcp_name(request.name), written=written)
        return compute_vmcp_status(
            owner,
            plan=plan,
            observed=observed if plan is not None else Observed(),
            previous=previous,
            now=now,
            retrying=retrying,
            cluster_domain=self.settings.cluster_domain,
        )
