"""How the MCPServer and MCPToolConfig controllers are wired into the manager.

`register_mcp_controllers(manager, settings)` declares, for each controller, the informers it
reads and the events that enqueue which keys:

- `mcpserver` (primary MCPServers) owns ServiceAccounts, Roles, RoleBindings, ConfigMaps,
  Deployments and Services (through their controller ownerReference); follows StatefulSets and
  Pods with our labels to the server named by `moorage.dev/mcpserver`, and the StatefulSet
  controller's `FailedCreate` Events to the server of their StatefulSet; and re-enqueues every
  server that references a changed MCPToolConfig or ConfigMap (cache indexes make that a lookup).
- `mcptoolconfig` (primary MCPToolConfigs) follows MCPServers to the config they reference (old
  and new reference on a change), so a referrer's arrival or departure updates the config's
  protection at once.

Owned kinds are watched through `app.kubernetes.io/managed-by=moorage` only; referenced
ConfigMaps through the complementary selector, so no ConfigMap is cached twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from moorage_api.constants import LABEL_MANAGED_BY, LABEL_MCPSERVER, MANAGED_BY
from moorage_core.kube import (
    CONFIGMAPS,
    CORE_EVENTS,
    MCPEXTERNALAUTHCONFIGS,
    MCPGROUPS,
    MCPSERVERS,
    MCPTOOLCONFIGS,
    PODS,
    STATEFULSETS,
)
from moorage_operator.planning.externalauth import external_auth_config_name_of
from moorage_operator.planning.mcpgroups import group_index_values
from moorage_operator.planning.mcpservers.references import config_map_names_of
from moorage_operator.planning.mcpservers.status import FAILED_CREATE
from moorage_operator.reconcilers.mcpgroups import GROUP_INDEX
from moorage_operator.reconcilers.mcpservers import (
    CHILD_KINDS,
    MCPServerReconciler,
    ServerCaches,
    utc_now,
)
from moorage_operator.reconcilers.mcptoolconfigs import (
    TOOL_CONFIG_INDEX,
    MCPToolConfigReconciler,
    tool_config_index_values,
)
from moorage_operator.reconcilers.pending import PendingWrites
from moorage_operator.runtime.cache import Cache
from moorage_operator.runtime.controller import Controller, Mapper, Request, requests_of
from moorage_operator.runtime.manager import Manager
from moorage_operator.settings import OperatorSettings

CONFIG_MAP_INDEX: Final = "moorage.dev/config-maps"
"""Index of the MCPServer cache: `namespace/name` of each ConfigMap a server references."""
UNMANAGED_SELECTOR: Final = f"{LABEL_MANAGED_BY}!={MANAGED_BY}"
REFUSAL_SELECTOR: Final = f"involvedObject.kind=StatefulSet,reason={FAILED_CREATE}"
"""Core Events saying the StatefulSet controller could not create a pod (the apiserver refused
it): the only place that refusal is recorded."""
"""ConfigMaps we do not create: where referenced documents live."""

EXTERNAL_AUTH_INDEX: Final = "moorage.dev/external-auth-config"
"""Index of the MCPServer and MCPRemoteProxy caches: `namespace/name` of the
MCPExternalAuthConfig named."""

MCPSERVER_CONTROLLER: Final = "mcpserver"
MCPTOOLCONFIG_CONTROLLER: Final = "mcptoolconfig"


def external_auth_index_values(obj: Mapping[str, Any]) -> list[str]:
    """Index function: the `namespace/name` of the MCPExternalAuthConfig `obj` names."""
    name = external_auth_config_name_of(obj)
    namespace = (obj.get("metadata") or {}).get("namespace") or ""
    return [f"{namespace}/{name}"] if name else []


def add_reference_indexes(cache: Cache) -> None:
    """Index MCPServers or MCPRemoteProxies by the MCPExternalAuthConfig and the MCPGroup they
    name (shared by their controllers, the MCPExternalAuthConfig's and the MCPGroup's)."""
    if not cache.has_index(EXTERNAL_AUTH_INDEX):
        cache.add_index(EXTERNAL_AUTH_INDEX, external_auth_index_values)
    if not cache.has_index(GROUP_INDEX):
        cache.add_index(GROUP_INDEX, group_index_values)


def config_map_index_values(server: Mapping[str, Any]) -> list[str]:
    namespace = (server.get("metadata") or {}).get("namespace") or ""
    return [f"{namespace}/{name}" for name in config_map_names_of(server)]


def server_of_labelled(obj: Mapping[str, Any]) -> list[Request]:
    """The MCPServer named by an object's `moorage.dev/mcpserver` label."""
    meta = obj.get("metadata") or {}
    name = (meta.get("labels") or {}).get(LABEL_MCPSERVER)
    return [Request(str(meta.get("namespace") or ""), str(name))] if name else []


def refused_statefulset_mapper(statefulsets: Cache) -> Mapper:
    """Maps an Event about a StatefulSet to the MCPServer labelled on that StatefulSet."""

    def mapper(event: Mapping[str, Any]) -> list[Request]:
        involved = event.get("involvedObject") or {}
        namespace = str(
            involved.get("namespace") or (event.get("metadata") or {}).get("namespace") or ""
        )
        statefulset = statefulsets.get(str(involved.get("name") or ""), namespace=namespace)
        return server_of_labelled(statefulset) if statefulset is not None else []

    return mapper


def referrers_mapper(servers: Cache, index: str) -> Mapper:
    """Maps a referenced object to the MCPServers whose `index` lists it."""

    def mapper(obj: Mapping[str, Any]) -> list[Request]:
        meta = obj.get("metadata") or {}
        return requests_of(servers.by_index(index, f"{meta.get('namespace')}/{meta.get('name')}"))

    return mapper


def tool_config_of_server(server: Mapping[str, Any]) -> list[Request]:
    """The MCPToolConfig an MCPServer references, as a request of the tool config controller."""
    return [Request(*value.split("/", 1)) for value in tool_config_index_values(server)]


def register_mcp_controllers(manager: Manager, settings: OperatorSettings) -> list[Controller]:
    """Add the `mcpserver` and `mcptoolconfig` controllers to `manager`; return them."""
    servers = manager.informer(MCPSERVERS)
    tool_configs = manager.informer(MCPTOOLCONFIGS)
    referenced = manager.informer(CONFIGMAPS, label_selector=UNMANAGED_SELECTOR)
    owned = {kind: manager.owned_informer(kind) for kind in CHILD_KINDS.values()}
    statefulsets = manager.owned_informer(STATEFULSETS)
    pods = manager.owned_informer(PODS)
    refusals = manager.informer(CORE_EVENTS, field_selector=REFUSAL_SELECTOR)
    external_auth_configs = manager.informer(MCPEXTERNALAUTHCONFIGS)
    groups = manager.informer(MCPGROUPS)
    servers.cache.add_index(TOOL_CONFIG_INDEX, tool_config_index_values)
    servers.cache.add_index(CONFIG_MAP_INDEX, config_map_index_values)
    add_reference_indexes(servers.cache)

    pending = PendingWrites()
    for kind, informer in owned.items():
        informer.add_handler(pending.forgetting_handler(kind))
    servers.add_handler(pending.forgetting_handler(MCPSERVERS))
    tool_configs.add_handler(pending.forgetting_handler(MCPTOOLCONFIGS))

    server_reconciler = MCPServerReconciler(
        manager.kube,
        settings=settings,
        caches=ServerCaches(
            servers=servers.cache,
            tool_configs=tool_configs.cache,
            config_maps=referenced.cache,
            owned={kind: informer.cache for kind, informer in owned.items()},
            statefulsets=statefulsets.cache,
            pods=pods.cache,
            refusals=refusals.cache,
            external_auth_configs=external_auth_configs.cache,
            groups=groups.cache,
        ),
        recorder=manager.event_recorder(),
        pending=pending,
    )
    server_controller = manager.add_controller(
        MCPSERVER_CONTROLLER, server_reconciler, for_kind=MCPSERVERS
    )
    for informer in owned.values():
        server_controller.owns(informer)
    server_controller.watches(statefulsets, server_of_labelled)
    server_controller.watches(pods, server_of_labelled)
    server_controller.watches(refusals, refused_statefulset_mapper(statefulsets.cache))
    server_controller.watches(tool_configs, referrers_mapper(servers.cache, TOOL_CONFIG_INDEX))
    server_controller.watches(referenced, referrers_mapper(servers.cache, CONFIG_MAP_INDEX))
    server_controller.watches(
        external_auth_configs, referrers_mapper(servers.cache, EXTERNAL_AUTH_INDEX)
    )
    server_controller.watches(groups, referrers_mapper(servers.cache, GROUP_INDEX))

    tool_config_controller = manager.add_controller(
        MCPTOOLCONFIG_CONTROLLER,
        MCPToolConfigReconciler(
            manager.kube,
            tool_configs=tool_configs.cache,
            servers=servers.cache,
            pending=pending,
            clock=utc_now,
        ),
        for_kind=MCPTOOLCONFIGS,
    )
    tool_config_controller.watches(servers, tool_config_of_server)
    return [server_controller, tool_config_controller]
