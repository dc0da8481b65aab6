"""How the VirtualMCPServer controller is wired into the manager.

`virtualmcpserver` (primary VirtualMCPServers) owns the aggregator's ServiceAccount, Role,
RoleBinding, ConfigMap, Deployment and Service; follows Pods with our labels to the server named
by `moorage.dev/virtualmcpserver`; and re-enqueues:

- the virtual servers of a group when the group changes, and when an MCPServer or MCPRemoteProxy
  joins, changes or leaves it (old and new group on a change: members are found as they come and
  go);
- every virtual server of a namespace when an MCPToolConfig or MCPExternalAuthConfig there
  changes (a backend may use it through its own `externalAuthConfigRef`, which the virtual server
  does not name);
- the virtual servers whose `incomingAuth` names a changed ConfigMap.

The primary informer reports status-only changes too, so a new `backendHealth` from the
aggregator is reconciled at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from moorage_api.constants import LABEL_VIRTUALMCPSERVER
from moorage_core.kube import MCPREMOTEPROXIES, MCPSERVERS, PODS, VIRTUALMCPSERVERS
from moorage_operator.planning.mcpgroups import group_index_values
from moorage_operator.reconcilers.mcpgroups import GROUP_INDEX
from moorage_operator.reconcilers.pending import PendingWrites
from moorage_operator.reconcilers.virtualmcpservers import (
    VirtualMCPServerReconciler,
    VirtualServerCaches,
    incoming_config_map_names,
)
from moorage_operator.runtime.cache import Cache
from moorage_operator.runtime.controller import Controller, Mapper, Request, requests_of
from moorage_operator.runtime.manager import Manager
from moorage_operator.settings import OperatorSettings
from moorage_operator.wiring.references import (
    CONFIG_MAP_INDEX,
    ReferenceInformers,
    index_references,
    labelled_mapper,
    own_children,
    owned_informers,
    referrers_mapper,
)

VIRTUALMCPSERVER_CONTROLLER: Final = "virtualmcpserver"


def incoming_index_values(obj: Mapping[str, Any]) -> list[str]:
    """Index function: `namespace/name` of each ConfigMap a VirtualMCPServer's `incomingAuth`
    names."""
    namespace = (obj.get("metadata") or {}).get("namespace") or ""
    return [f"{namespace}/{name}" for name in incoming_config_map_names(obj)]


def servers_of_member(virtual_servers: Cache) -> Mapper:
    """Maps an MCPServer or MCPRemoteProxy to the virtual servers of the group it names."""

    def mapper(obj: Mapping[str, Any]) -> list[Request]:
        return [
            request
            for key in group_index_values(obj)
            for request in requests_of(virtual_servers.by_index(GROUP_INDEX, key))
        ]

    return mapper


def servers_of_namespace(virtual_servers: Cache) -> Mapper:
    """Maps an object to every virtual server of its namespace."""

    def mapper(obj: Mapping[str, Any]) -> list[Request]:
        namespace = str((obj.get("metadata") or {}).get("namespace") or "")
        return requests_of(virtual_servers.list(namespace=namespace))

    return mapper


def register_virtualmcpserver_controller(
    manager: Manager, settings: OperatorSettings
) -> Controller:
    """Add the `virtualmcpserver` controller to `manager`; return it."""
    virtual_servers = manager.informer(VIRTUALMCPSERVERS)
    servers = manager.informer(MCPSERVERS)
    remote_proxies = manager.informer(MCPREMOTEPROXIES)
    references = ReferenceInformers.of(manager)
    owned = owned_informers(manager)
    pods = manager.owned_informer(PODS)
    index_references(servers.cache)
    index_references(remote_proxies.cache)
    virtual_servers.cache.add_index(GROUP_INDEX, group_index_values)
    virtual_servers.cache.add_index(CONFIG_MAP_INDEX, incoming_index_values)
    pending = PendingWrites()
    virtual_servers.add_handler(pending.forgetting_handler(VIRTUALMCPSERVERS))
    reconciler = VirtualMCPServerReconciler(
        manager.kube,
        settings=settings,
        caches=VirtualServerCaches(
            virtual_servers=virtual_servers.cache,
            groups=references.groups.cache,
            servers=servers.cache,
            remote_proxies=remote_proxies.cache,
            tool_configs=references.tool_configs.cache,
            external_auth_configs=references.external_auth_configs.cache,
            config_maps=references.config_maps.cache,
            owned={kind: informer.cache for kind, informer in owned.items()},
            pods=pods.cache,
        ),
        recorder=manager.event_recorder(),
        pending=pending,
    )
    controller = manager.add_controller(
        VIRTUALMCPSERVER_CONTROLLER, reconciler, for_kind=VIRTUALMCPSERVERS
    )
    own_children(controller, owned, pending=pending)
    controller.watches(pods, labelled_mapper(LABEL_VIRTUALMCPSERVER))
    controller.watches(references.groups, referrers_mapper(virtual_servers.cache, GROUP_INDEX))
    controller.watches(servers, servers_of_member(virtual_servers.cache))
    controller.watches(remote_proxies, servers_of_member(virtual_servers.cache))
    for informer in (references.tool_configs, references.external_auth_configs):
        controller.watches(informer, servers_of_namespace(virtual_servers.cache))
    controller.watches(
        references.config_maps, referrers_mapper(virtual_servers.cache, CONFIG_MAP_INDEX)
    )
    return controller
