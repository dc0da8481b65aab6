"""The MCPToolConfig reconciler: status, and the finalizer that protects a config in use.

One reconcile of `namespace/name`:
1. read the MCPToolConfig and the MCPServers referencing it from the caches (an index);
2. add the finalizer `moorage.dev/toolconfig-protection` to a config that is not being deleted;
   for one that is, remove it once no MCPServer or MCPRemoteProxy references it — checked against a fresh list of
   the namespace's MCPServers first, since a server created a moment ago may not be cached yet;
3. patch the status (`configHash`, `Valid`, `DeletionBlocked` naming the referrers) when it changed.

Changes to a config reach its servers through the MCPServer controller, which watches
MCPToolConfigs; this controller in turn watches MCPServers, so that a referrer going away
unblocks a pending deletion at once.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from moorage_api.constants import FINALIZER_TOOLCONFIG_PROTECTION
from moorage_core.kube import MCPREMOTEPROXIES, MCPSERVERS, MCPTOOLCONFIGS, KubeClient
from moorage_operator.planning.conditions import format_time
from moorage_operator.planning.mcpservers.references import tool_config_name_of
from moorage_operator.planning.mcptoolconfigs import STATUS_FIELDS, compute_toolconfig_status
from moorage_operator.reconcilers.finalizing import converge_protection
from moorage_operator.reconcilers.pending import PendingWrites
from moorage_operator.reconcilers.statuswrites import write_status
from moorage_operator.runtime.cache import Cache
from moorage_operator.runtime.controller import Request, Result

log = structlog.get_logger(__name__)

TOOL_CONFIG_INDEX = "moorage.dev/tool-config"
"""Index of the MCPServer cache: `namespace/name` of the MCPToolConfig a server references."""

Clock = Callable[[], datetime.datetime]


def tool_config_index_values(server: Mapping[str, Any]) -> list[str]:
    """Index function: the `namespace/name` of the MCPToolConfig `server` references."""
    name = tool_config_name_of(server)
    if name is None:
        return []
    namespace = (server.get("metadata") or {}).get("namespace") or ""
    return [f"{namespace}/{name}"]


def _names(objects: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted(str((o.get("metadata") or {}).get("name")) for o in objects)


class MCPToolConfigReconciler:
    """Keeps an MCPToolConfig's status and protection finalizer; see the module docstring."""

    def __init__(
        self,
        kube: KubeClient,
        *,
        tool_configs: Cache,
        servers: Cache,
        pending: PendingWrites,
        clock: Clock,
        remote_proxies: Cache | None = None,
    ) -> None:
        self.kube = kube
        self.tool_configs = tool_configs
        self.servers = servers
        """The MCPServer cache, with the TOOL_CONFIG_INDEX index."""
        self.remote_proxies = remote_proxies
        """The MCPRemoteProxy cache, with the TOOL_CONFIG_INDEX index (None: not watched)."""
        self.pending = pending
        self.clock = clock

    def _referrers(
        self, servers: Sequence[Mapping[str, Any]], proxies: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        """MCPServers by name, then MCPRemoteProxies named as such."""
        return _names(servers) + [f"MCPRemoteProxy {name}" for name in _names(proxies)]

    async def reconcile(self, request: Request) -> Result:
        obj = self.tool_configs.get(request.name, namespace=request.namespace)
        if obj is None:
            return Result()
        key = f"{request.namespace}/{request.name}"

        async def live_referrers() -> list[str]:
            watched = self.remote_proxies is not None
            kinds = (MCPSERVERS, MCPREMOTEPROXIES) if watched else (MCPSERVERS,)
            live = [await self.kube.list(kind, namespace=request.namespace) for kind in kinds]
            using = [
                [obj for obj in listed.items if tool_config_name_of(obj) == request.name]
                for listed in live
            ]
            return self._referrers(using[0], using[1] if len(using) > 1 else [])

        protected = await converge_protection(
            self.kube,
            MCPTOOLCONFIGS,
            obj,
            finalizer=FINALIZER_TOOLCONFIG_PROTECTION,
            dependents=self._referrers(
                self.servers.by_index(TOOL_CONFIG_INDEX, key),
                self.remote_proxies.by_index(TOOL_CONFIG_INDEX, key)
                if self.remote_proxies is not None
                else [],
            ),
            live_dependents=live_referrers,
        )
        if protected is None:
            log.debug("toolconfig_released")
            return Result()
        obj, referrers = protected
        now = format_time(self.clock())
        written = await write_status(
            self.kube,
            MCPTOOLCONFIGS,
            obj,
            compute=lambda previous: compute_toolconfig_status(
                obj, referrers=referrers, previous=previous, now=now
            ),
            fields=STATUS_FIELDS,
            pending=self.pending,
        )
        log.debug("toolconfig_reconciled", referrers=len(referrers), status_written=written)
        return Result()
