"""How the MCPRemoteProxy and MCPExternalAuthConfig controllers are wired into the manager.

- `mcpremoteproxy` (primary MCPRemoteProxies) owns the proxy runner's ServiceAccount, Role,
  RoleBinding, ConfigMap, Deployment and Service (controller ownerReference); follows Pods with
  our labels to the proxy named by `moorage.dev/mcpremoteproxy`; and re-enqueues every proxy
  that references a changed MCPToolConfig, ConfigMap, MCPExternalAuthConfig or MCPGroup. The
  primary informer reports every change of an MCPRemoteProxy, status-only ones included, so a
  new `status.remoteCheck` from the proxy runner is reconciled at once.
- `mcpexternalauthconfig` (primary MCPExternalAuthConfigs) follows MCPServers and
  MCPRemoteProxies to the config they name (old and new on a change), for `referencedBy`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from moorage_api.constants import LABEL_MCPREMOTEPROXY
from moorage_core.kube import MCPEXTERNALAUTHCONFIGS, MCPREMOTEPROXIES, MCPSERVERS, PODS
from moorage_operator.reconcilers.mcpexternalauthconfigs import MCPExternalAuthConfigReconciler
from moorage_operator.reconcilers.mcpremoteproxies import (
    MCPRemoteProxyReconciler,
    RemoteProxyCaches,
)
from moorage_operator.reconcilers.pending import PendingWrites
from moorage_operator.reconcilers.proxyowners import utc_now
from moorage_operator.runtime.controller import Controller, Request
from moorage_operator.runtime.manager import Manager
from moorage_operator.settings import OperatorSettings
from moorage_operator.wiring.references import (
    ReferenceInformers,
    external_auth_index_values,
    index_references,
    labelled_mapper,
    own_children,
    owned_informers,
    watch_references,
)

MCPREMOTEPROXY_CONTROLLER: Final = "mcpremoteproxy"
MCPEXTERNALAUTHCONFIG_CONTROLLER: Final = "mcpexternalauthconfig"


def register_mcpremoteproxy_controller(manager: Manager, settings: OperatorSettings) -> Controller:
    """Add the `mcpremoteproxy` controller to `manager`; return it."""
    proxies = manager.informer(MCPREMOTEPROXIES)
    references = ReferenceInformers.of(manager)
    owned = owned_informers(manager)
    pods = manager.owned_informer(PODS)
    pending = PendingWrites()
    proxies.add_handler(pending.forgetting_handler(MCPREMOTEPROXIES))
    reconciler = MCPRemoteProxyReconciler(
        manager.kube,
        settings=settings,
        caches=RemoteProxyCaches(
            remote_proxies=proxies.cache,
            tool_configs=references.tool_configs.cache,
            config_maps=references.config_maps.cache,
            external_auth_configs=references.external_auth_configs.cache,
            groups=references.groups.cache,
            owned={kind: informer.cache for kind, informer in owned.items()},
            pods=pods.cache,
        ),
        recorder=manager.event_recorder(),
        pending=pending,
    )
    controller = manager.add_controller(
        MCPREMOTEPROXY_CONTROLLER, reconciler, for_kind=MCPREMOTEPROXIES
    )
    own_children(controller, owned, pending=pending)
    controller.watches(pods, labelled_mapper(LABEL_MCPREMOTEPROXY))
    watch_references(controller, referrers=proxies, informers=references)
    return controller


def config_of_referrer(obj: Mapping[str, Any]) -> list[Request]:
    """The MCPExternalAuthConfig an MCPServer or MCPRemoteProxy names, as a request."""
    return [Request(*value.split("/", 1)) for value in external_auth_index_values(obj)]


def register_mcpexternalauthconfig_controller(manager: Manager) -> Controller:
    """Add the `mcpexternalauthconfig` controller to `manager`; return it."""
    configs = manager.informer(MCPEXTERNALAUTHCONFIGS)
    servers = manager.informer(MCPSERVERS)
    proxies = manager.informer(MCPREMOTEPROXIES)
    index_references(servers.cache)
    index_references(proxies.cache)
    pending = PendingWrites()
    configs.add_handler(pending.forgetting_handler(MCPEXTERNALAUTHCONFIGS))
    controller = manager.add_controller(
        MCPEXTERNALAUTHCONFIG_CONTROLLER,
        MCPExternalAuthConfigReconciler(
            kube=manager.kube,
            configs=configs.cache,
            servers=servers.cache,
            remote_proxies=proxies.cache,
            pending=pending,
            clock=utc_now,
        ),
        for_kind=MCPEXTERNALAUTHCONFIGS,
    )
    controller.watches(servers, config_of_referrer)
    controller.watches(proxies, config_of_referrer)
    return controller
