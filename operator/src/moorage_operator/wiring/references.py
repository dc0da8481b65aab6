"""What the kinds that run a proxy runner (MCPServer, MCPRemoteProxy) share in their wiring.

Both reference MCPToolConfigs, ConfigMaps (OIDC, Cedar documents), MCPExternalAuthConfigs and
MCPGroups by name in their namespace, and both own the proxy runner's children. Here:

- cache indexes of the referrers by each referenced object (`index_references`), shared with
  the controllers of the referenced kinds (MCPToolConfig, MCPExternalAuthConfig, MCPGroup);
- mappers from a referenced object back to its referrers (`watch_references`);
- a controller owning the children and forgetting pending writes on their events (`own_children`).

Referenced ConfigMaps are watched through `app.kubernetes.io/managed-by!=moorage`, the owned
kinds through the complementary selector, so no ConfigMap is cached twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from moorage_api.constants import LABEL_MANAGED_BY, MANAGED_BY
from moorage_core.kube import (
    CONFIGMAPS,
    MCPEXTERNALAUTHCONFIGS,
    MCPGROUPS,
    MCPTOOLCONFIGS,
    ResourceKind,
)
from moorage_operator.planning.externalauth import external_auth_config_name_of
from moorage_operator.planning.mcpgroups import group_index_values
from moorage_operator.planning.mcpservers.references import config_map_names_of
from moorage_operator.reconcilers.mcpexternalauthconfigs import EXTERNAL_AUTH_INDEX
from moorage_operator.reconcilers.mcpgroups import GROUP_INDEX
from moorage_operator.reconcilers.mcptoolconfigs import TOOL_CONFIG_INDEX, tool_config_index_values
from moorage_operator.reconcilers.pending import PendingWrites
from moorage_operator.reconcilers.proxyowners import CHILD_KINDS
from moorage_operator.runtime.cache import Cache
from moorage_operator.runtime.controller import Controller, Mapper, Request, requests_of
from moorage_operator.runtime.informer import Informer
from moorage_operator.runtime.manager import Manager

UNMANAGED_SELECTOR: Final = f"{LABEL_MANAGED_BY}!={MANAGED_BY}"
"""ConfigMaps we do not create: where referenced documents live."""
CONFIG_MAP_INDEX: Final = "moorage.dev/config-maps"
"""Index of a referrers' cache: `namespace/name` of each ConfigMap an object references."""


def _namespaced(obj: Mapping[str, Any], names: list[str]) -> list[str]:
    namespace = (obj.get("metadata") or {}).get("namespace") or ""
    return [f"{namespace}/{name}" for name in names]


def config_map_index_values(obj: Mapping[str, Any]) -> list[str]:
    return _namespaced(obj, config_map_names_of(obj))


def external_auth_index_values(obj: Mapping[str, Any]) -> list[str]:
    """Index function: the `namespace/name` of the MCPExternalAuthConfig `obj` names."""
    name = external_auth_config_name_of(obj)
    return _namespaced(obj, [name] if name else [])


REFERENCE_INDEXES: Final[Mapping[str, Callable[[Mapping[str, Any]], list[str]]]] = {
    TOOL_CONFIG_INDEX: tool_config_index_values,
    CONFIG_MAP_INDEX: config_map_index_values,
    EXTERNAL_AUTH_INDEX: external_auth_index_values,
    GROUP_INDEX: group_index_values,
}


def index_references(cache: Cache) -> None:
    """Index MCPServers or MCPRemoteProxies by everything they reference (once per cache:
    several controllers share it)."""
    for name, func in REFERENCE_INDEXES.items():
        if not cache.has_index(name):
            cache.add_index(name, func)


def referrers_mapper(referrers: Cache, index: str) -> Mapper:
    """Maps a referenced object to the objects whose `index` lists it."""

    def mapper(obj: Mapping[str, Any]) -> list[Request]:
        meta = obj.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        return requests_of(referrers.by_index(index, key))

    return mapper


def labelled_mapper(label: str) -> Mapper:
    """Maps an object to the owner its `label` names (in its namespace)."""

    def mapper(obj: Mapping[str, Any]) -> list[Request]:
        meta = obj.get("metadata") or {}
        name = (meta.get("labels") or {}).get(label)
        return [Request(str(meta.get("namespace") or ""), str(name))] if name else []

    return mapper


@dataclass(frozen=True, slots=True)
class ReferenceInformers:
    """The informers of what a proxy runner's owner references."""

    tool_configs: Informer
    config_maps: Informer
    """Only those we do not manage."""
    external_auth_configs: Informer
    groups: Informer

    @classmethod
    def of(cls, manager: Manager) -> ReferenceInformers:
        return cls(
            tool_configs=manager.informer(MCPTOOLCONFIGS),
            config_maps=manager.informer(CONFIGMAPS, label_selector=UNMANAGED_SELECTOR),
            external_auth_configs=manager.informer(MCPEXTERNALAUTHCONFIGS),
            groups=manager.informer(MCPGROUPS),
        )


def watch_references(
    controller: Controller, *, referrers: Informer, informers: ReferenceInformers
) -> None:
    """Index `referrers` and re-enqueue each of them whose referenced object changed."""
    index_references(referrers.cache)
    for informer, index in (
        (informers.tool_configs, TOOL_CONFIG_INDEX),
        (informers.config_maps, CONFIG_MAP_INDEX),
        (informers.external_auth_configs, EXTERNAL_AUTH_INDEX),
        (informers.groups, GROUP_INDEX),
    ):
        controller.watches(informer, referrers_mapper(referrers.cache, index))


def owned_informers(manager: Manager) -> dict[ResourceKind, Informer]:
    """The informers of the proxy runner's children, one per CHILD_KINDS."""
    return {kind: manager.owned_informer(kind) for kind in CHILD_KINDS.values()}


def own_children(
    controller: Controller, owned: Mapping[ResourceKind, Informer], *, pending: PendingWrites
) -> None:
    """`controller` owns the children; each event about one forgets our pending write of it."""
    for kind, informer in owned.items():
        informer.add_handler(pending.forgetting_handler(kind))
        controller.owns(informer)
