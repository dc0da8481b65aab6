"""How the MCPServer and MCPToolConfig controllers are wired into the manager.

`register_mcp_controllers(manager, settings)` declares, for each controller, the informers it
reads and the events that enqueue which keys:

- `mcpserver` (primary MCPServers) owns ServiceAccounts, Roles, RoleBindings, ConfigMaps,
  Deployments and Services (through their controller ownerReference); follows StatefulSets and
  Pods with our labels to the server named by `moorage.dev/mcpserver`, and the StatefulSet
  controller's `FailedCreate` Events to the server of their StatefulSet; and re-enqueues every
  server that references a changed MCPToolConfig, ConfigMap, MCPExternalAuthConfig or MCPGroup
  (cache indexes make that a lookup; see `wiring.references`).
- `mcptoolconfig` (primary MCPToolConfigs) follows MCPServers and MCPRemoteProxies to the config
  they reference (old and new reference on a change), so a referrer's arrival or departure
  updates the config's protection at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from moorage_api.constants import LABEL_MCPSERVER
from moorage_core.kube import (
    CORE_EVENTS,
    MCPREMOTEPROXIES,
    MCPSERVERS,
    MCPTOOLCONFIGS,
    PODS,
    STATEFULSETS,
)
from moorage_operator.planning.mcpservers.status import FAILED_CREATE
from moorage_operator.reconcilers.mcpservers import MCPServerReconciler, ServerCaches, utc_now
from moorage_operator.reconcilers.mcptoolconfigs import (
    MCPToolConfigReconciler,
    tool_config_index_values,
)
from moorage_operator.reconcilers.pending import PendingWrites
from moorage_operator.runtime.cache import Cache
from moorage_operator.runtime.controller import Controller, Mapper, Request
from moorage_operator.runtime.manager import Manager
from moorage_operator.settings import OperatorSettings
from moorage_operator.wiring.references import (
    ReferenceInformers,
    index_references,
    labelled_mapper,
    own_children,
    owned_informers,
    watch_references,
)

REFUSAL_SELECTOR: Final = f"involvedObject.kind=StatefulSet,reason={FAILED_CREATE}"
"""Core Events saying the StatefulSet controller could not create a pod (the apiserver refused
it): the only place that refusal is recorded."""

MCPSERVER_CONTROLLER: Final = "mcpserver"
MCPTOOLCONFIG_CONTROLLER: Final = "mcptoolconfig"

server_of_labelled = labelled_mapper(LABEL_MCPSERVER)
"""The MCPServer named by an object's `moorage.dev/mcpserver` label."""


def refused_statefulset_mapper(statefulsets: Cache) -> Mapper:
    """Maps an Event about a StatefulSet to the MCPServer labelled on that StatefulSet."""

    def mapper(event: Mapping[str, Any]) -> list[Request]:
        involved = event.get("involvedObject") or {}
        namespace = str(
            involved.get("namespace") or (event.get("metadata") or {}).get("namespace") or ""
        )
        statefulset = statefulsets.get(str(involved.get("name") or ""), namespace=namespace)
        return list(server_of_labelled(statefulset)) if statefulset is not None else []

    return mapper


def tool_config_of_server(server: Mapping[str, Any]) -> list[Request]:
    """The MCPToolConfig an MCPServer references, as a request of the tool config controller."""
    return [Request(*value.split("/", 1)) for value in tool_config_index_values(server)]


def register_mcp_controllers(manager: Manager, settings: OperatorSettings) -> list[Controller]:
    """Add the `mcpserver` and `mcptoolconfig` controllers to `manager`; return them."""
    servers = manager.informer(MCPSERVERS)
    remote_proxies = manager.informer(MCPREMOTEPROXIES)
    index_references(remote_proxies.cache)
    references = ReferenceInformers.of(manager)
    owned = owned_informers(manager)
    statefulsets = manager.owned_informer(STATEFULSETS)
    pods = manager.owned_informer(PODS)
    refusals = manager.informer(CORE_EVENTS, field_selector=REFUSAL_SELECTOR)

    pending = PendingWrites()
    servers.add_handler(pending.forgetting_handler(MCPSERVERS))
    references.tool_configs.add_handler(pending.forgetting_handler(MCPTOOLCONFIGS))

    server_reconciler = MCPServerReconciler(
        manager.kube,
        settings=settings,
        caches=ServerCaches(
            servers=servers.cache,
            tool_configs=references.tool_configs.cache,
            config_maps=references.config_maps.cache,
            owned={kind: informer.cache for kind, informer in owned.items()},
            statefulsets=statefulsets.cache,
            pods=pods.cache,
            refusals=refusals.cache,
            external_auth_configs=references.external_auth_configs.cache,
            groups=references.groups.cache,
        ),
        recorder=manager.event_recorder(),
        pending=pending,
    )
    server_controller = manager.add_controller(
        MCPSERVER_CONTROLLER, server_reconciler, for_kind=MCPSERVERS
    )
    own_children(server_controller, owned, pending=pending)
    server_controller.watches(statefulsets, server_of_labelled)
    server_controller.watches(pods, server_of_labelled)
    server_controller.watches(refusals, refused_statefulset_mapper(statefulsets.cache))
    watch_references(server_controller, referrers=servers, informers=references)

    tool_config_controller = manager.add_controller(
        MCPTOOLCONFIG_CONTROLLER,
        MCPToolConfigReconciler(
            manager.kube,
            tool_configs=references.tool_configs.cache,
            servers=servers.cache,
            remote_proxies=remote_proxies.cache,
            pending=pending,
            clock=utc_now,
        ),
        for_kind=MCPTOOLCONFIGS,
    )
    tool_config_controller.watches(servers, tool_config_of_server)
    tool_config_controller.watches(remote_proxies, tool_config_of_server)
    return [server_controller, tool_config_controller]
