"""MCPTenant allowances in the webhook process: a watch-backed index, never a request per review.

`TenantAllowances.run()` lists and watches the cluster-scoped MCPTenants (`moorage_core.watching`)
and, on every change, rebuilds the namespace → allowances index (`moorage_api.podsecurity`), so a
review looks its namespace up in a dict (spec §9: reviews stay well under a millisecond).

Until the first list has arrived the index is unknown: `lookup()` answers None and the webhook
refuses only what an allowance could have permitted (fail closed), while `/readyz` reports not
ready so that the Service sends reviews to a replica that has synced. An MCPTenant the model
refuses (written past a missing CRD rule) grants nothing and is logged.

I/O shell: what an allowance permits is decided in `moorage_api.podsecurity`.
"""

from __future__ import annotations

import asyncio

import structlog

from moorage_api.mcptenant import PodTemplateAllowances
from moorage_api.podsecurity import NO_ALLOWANCES, allowances_by_namespace, parse_tenants
from moorage_core.kube import MCPTENANTS, JsonObject, KubeClient
from moorage_core.watching import WatchedSet

log = structlog.get_logger(__name__)


class TenantAllowances:
    """The MCPTenants of the cluster, indexed by the namespaces they cover."""

    def __init__(self, kube: KubeClient) -> None:
        self._watched = WatchedSet(kube, MCPTENANTS, namespace="", on_change=self._on_change)
        self._index: dict[str, PodTemplateAllowances] | None = None
        """None until the first list; then rebuilt whole on every change (MCPTenants are few
        and rarely written, so rebuilding beats patching it)."""

    def lookup(self, namespace: str) -> PodTemplateAllowances | None:
        if self._index is None:
            return None
        return self._index.get(namespace, NO_ALLOWANCES)

    async def check_synced(self) -> None:
        """Readiness: raise until the first list of MCPTenants has been indexed."""
        if self._index is None:
            raise RuntimeError("MCPTenants not listed yet")

    def _rebuild(self) -> None:
        tenants, problems = parse_tenants(self._watched.snapshot())
        for problem in problems:
            log.warning("mcptenant_ignored", error=problem)
        self._index = allowances_by_namespace(tenants)
        log.info("mcptenants_indexed", tenants=len(tenants), namespaces=len(self._index))

    def _on_change(self, type_: str, obj: JsonObject) -> None:
        self._rebuild()

    async def run(self) -> None:
        """List and watch until cancelled (the index is built after the first list)."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._watched.run(), name="watch mcptenants")
            # An empty first list reports no event, so the index is built once it has arrived.
            await self._watched.wait_until(lambda _objects: True)
            self._rebuild()
