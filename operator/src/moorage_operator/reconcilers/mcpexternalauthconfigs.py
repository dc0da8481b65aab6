"""The MCPExternalAuthConfig reconciler: its status (`Valid`, `referencedBy`).

One reconcile of `namespace/name` reads the config and the MCPServers and MCPRemoteProxies that
name it (cache indexes by config) and patches the status when it changed. A change of the config
reaches its referrers through their own controllers, which watch MCPExternalAuthConfigs and
re-render their RunConfig and Deployment; this controller watches the referrers, so one starting
or ceasing to use the config updates `referencedBy` at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import structlog

from moorage_core.kube import MCPEXTERNALAUTHCONFIGS, KubeClient
from moorage_operator.planning.conditions import format_time
from moorage_operator.planning.externalauth import STATUS_FIELDS, compute_external_auth_status
from moorage_operator.planning.mcpgroups import members_of
from moorage_operator.reconcilers.pending import PendingWrites
from moorage_operator.reconcilers.proxyowners import Clock
from moorage_operator.reconcilers.statuswrites import write_status
from moorage_operator.runtime.cache import Cache
from moorage_operator.runtime.controller import Request, Result

log = structlog.get_logger(__name__)

EXTERNAL_AUTH_INDEX: Final = "moorage.dev/external-auth-config"
"""Index of the MCPServer and MCPRemoteProxy caches: `namespace/name` of the
MCPExternalAuthConfig named."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MCPExternalAuthConfigReconciler:
    """Keeps an MCPExternalAuthConfig's status; see the module docstring."""

    kube: KubeClient
    configs: Cache
    servers: Cache
    """The MCPServer cache, with the EXTERNAL_AUTH_INDEX index."""
    remote_proxies: Cache
    """The MCPRemoteProxy cache, with the EXTERNAL_AUTH_INDEX index."""
    pending: PendingWrites
    clock: Clock

    async def reconcile(self, request: Request) -> Result:
        obj = self.configs.get(request.name, namespace=request.namespace)
        if obj is None:
            return Result()
        key = f"{request.namespace}/{request.name}"
        referrers = members_of(
            servers=self.servers.by_index(EXTERNAL_AUTH_INDEX, key),
            remote_proxies=self.remote_proxies.by_index(EXTERNAL_AUTH_INDEX, key),
        )
        now = format_time(self.clock())
        written = await write_status(
            self.kube,
            MCPEXTERNALAUTHCONFIGS,
            obj,
            compute=lambda previous: compute_external_auth_status(
                obj, referrers=referrers, previous=previous, now=now
            ),
            fields=STATUS_FIELDS,
            pending=self.pending,
        )
        log.debug("external_auth_config_reconciled", referrers=len(referrers), written=written)
        return Result()
