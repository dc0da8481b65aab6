"""How the MCPRegistry controller is wired into the manager.

`register_mcpregistry_controller(manager, settings)` adds controller `mcpregistry` (primary
MCPRegistries) and declares what enqueues which registry:

- the storage ConfigMap, the API Deployment and Service, followed to their controller owner
  (watched through `app.kubernetes.io/managed-by=moorage`, the informers the other controllers
  share);
- a source ConfigMap (not managed by us), followed to every registry whose `source.configMap`
  names it (a cache index on the registries makes that a lookup), so editing it re-syncs at once.

The registry's own settings (`RegistrySettings`) are read from the environment unless given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from moorage_api.constants import LABEL_MANAGED_BY, MANAGED_BY
from moorage_core.kube import CONFIGMAPS, DEPLOYMENTS, MCPREGISTRIES, SERVICES
from moorage_operator.reconcilers.mcpregistries import MCPRegistryReconciler, RegistryCaches
from moorage_operator.reconcilers.pending import PendingWrites
from moorage_operator.registrysettings import RegistrySettings
from moorage_operator.runtime.cache import Cache
from moorage_operator.runtime.controller import Controller, Mapper, Request, requests_of
from moorage_operator.runtime.manager import Manager
from moorage_operator.settings import OperatorSettings

MCPREGISTRY_CONTROLLER: Final = "mcpregistry"
SOURCE_CONFIG_MAP_INDEX: Final = "moorage.dev/registry-source-config-map"
"""Index of the MCPRegistry cache: `namespace/name` of the ConfigMap a registry syncs from."""
UNMANAGED_SELECTOR: Final = f"{LABEL_MANAGED_BY}!={MANAGED_BY}"
"""ConfigMaps we do not create: where source documents live (an informer shared with the
other controllers that read user ConfigMaps)."""


def source_config_map_index_values(registry: Mapping[str, Any]) -> list[str]:
    """The index values of a raw MCPRegistry: its source ConfigMap, if any."""
    meta = registry.get("metadata") or {}
    source = (registry.get("spec") or {}).get("source") or {}
    config_map = source.get("configMap") or {}
    name = config_map.get("name")
    if source.get("type") != "configMap" or not name:
        return []
    return [f"{meta.get('namespace') or ''}/{name}"]


def registries_of_source(registries: Cache) -> Mapper:
    """Maps a ConfigMap to the registries syncing from it."""

    def mapper(obj: Mapping[str, Any]) -> list[Request]:
        meta = obj.get("metadata") or {}
        value = f"{meta.get('namespace') or ''}/{meta.get('name')}"
        return requests_of(registries.by_index(SOURCE_CONFIG_MAP_INDEX, value))

    return mapper


def register_mcpregistry_controller(
    manager: Manager,
    settings: OperatorSettings,
    *,
    registry_settings: RegistrySettings | None = None,
) -> Controller:
    """Add the `mcpregistry` controller to `manager`; return it."""
    registries = manager.informer(MCPREGISTRIES)
    sources = manager.informer(CONFIGMAPS, label_selector=UNMANAGED_SELECTOR)
    owned = {kind: manager.owned_informer(kind) for kind in (CONFIGMAPS, DEPLOYMENTS, SERVICES)}
    registries.cache.add_index(SOURCE_CONFIG_MAP_INDEX, source_config_map_index_values)

    pending = PendingWrites()
    registries.add_handler(pending.forgetting_handler(MCPREGISTRIES))
    for kind, informer in owned.items():
        informer.add_handler(pending.forgetting_handler(kind))

    reconciler = MCPRegistryReconciler(
        manager.kube,
        caches=RegistryCaches(
            registries=registries.cache,
            source_config_maps=sources.cache,
            storage_config_maps=owned[CONFIGMAPS].cache,
            deployments=owned[DEPLOYMENTS].cache,
            services=owned[SERVICES].cache,
        ),
        settings=registry_settings
        or RegistrySettings.from_env(api_image=settings.registry_api_image),
        recorder=manager.event_recorder(),
        pending=pending,
    )
    controller = manager.add_controller(MCPREGISTRY_CONTROLLER, reconciler, for_kind=MCPREGISTRIES)
    for informer in owned.values():
        controller.owns(informer)
    controller.watches(sources, registries_of_source(registries.cache))
    return controller
