"""The MCPGroup reconciler: the members in the status, and the finalizer that keeps a group with
members.

One reconcile of `namespace/name`:
1. read the MCPGroup and its members (MCPServers and MCPRemoteProxies whose `spec.groupRef`
   names it) from the caches, through an index by group;
2. add the finalizer `moorage.dev/group-members` to a group that is not being deleted; for one
   that is, remove it once no member remains — checked against fresh lists of the namespace's
   MCPServers and MCPRemoteProxies first, since a member created a moment ago may not be cached;
3. patch the status (members and their phases, counts, `Ready`, `DeletionBlocked` naming the
   members) when it changed.

The controller watches MCPServers and MCPRemoteProxies and maps each to its group (old and new
on a change), so a member joining, leaving or changing phase updates the group at once.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import structlog

from moorage_core.kube import MCPGROUPS, MCPREMOTEPROXIES, MCPSERVERS, KubeClient
from moorage_operator.planning.conditions import format_time
from moorage_operator.planning.mcpgroups import (
    FINALIZER_GROUP_MEMBERS,
    STATUS_FIELDS,
    Member,
    compute_group_status,
    group_name_of,
    members_of,
)
from moorage_operator.reconcilers.finalizing import converge_protection
from moorage_operator.reconcilers.pending import PendingWrites
from moorage_operator.reconcilers.statuswrites import write_status
from moorage_operator.runtime.cache import Cache
from moorage_operator.runtime.controller import Request, Result

log = structlog.get_logger(__name__)

GROUP_INDEX: Final = "moorage.dev/group"
"""Index of the MCPServer and MCPRemoteProxy caches: `namespace/name` of the group named."""

Clock = Callable[[], datetime.datetime]

__all__ = ["GROUP_INDEX", "MCPGroupReconciler"]


def _in_group(objects: Sequence[Mapping[str, Any]], group: str) -> list[Mapping[str, Any]]:
    return [obj for obj in objects if group_name_of(obj) == group]


@dataclass(frozen=True, slots=True, kw_only=True)
class MCPGroupReconciler:
    """Keeps an MCPGroup's status and finalizer; see the module docstring."""

    kube: KubeClient
    groups: Cache
    servers: Cache
    """The MCPServer cache, with the GROUP_INDEX index."""
    remote_proxies: Cache
    """The MCPRemoteProxy cache, with the GROUP_INDEX index."""
    pending: PendingWrites
    clock: Clock

    async def reconcile(self, request: Request) -> Result:
        obj = self.groups.get(request.name, namespace=request.namespace)
        if obj is None:
            return Result()
        key = f"{request.namespace}/{request.name}"
        protected = await converge_protection(
            self.kube,
            MCPGROUPS,
            obj,
            finalizer=FINALIZER_GROUP_MEMBERS,
            dependents=members_of(
                servers=self.servers.by_index(GROUP_INDEX, key),
                remote_proxies=self.remote_proxies.by_index(GROUP_INDEX, key),
            ),
            live_dependents=lambda: self._live_members(request),
        )
        if protected is None:
            log.debug("group_released")
            return Result()
        obj, members = protected
        now = format_time(self.clock())
        written = await write_status(
            self.kube,
            MCPGROUPS,
            obj,
            compute=lambda previous: compute_group_status(
                obj, members=members, previous=previous, now=now
            ),
            fields=STATUS_FIELDS,
            pending=self.pending,
        )
        log.debug("group_reconciled", members=len(members), status_written=written)
        return Result()

    async def _live_members(self, request: Request) -> list[Member]:
        """The members as the apiserver lists them now (the cache may lag behind a member
        created a moment ago)."""
        servers = await self.kube.list(MCPSERVERS, namespace=request.namespace)
        proxies = await self.kube.list(MCPREMOTEPROXIES, namespace=request.namespace)
        return members_of(
            servers=_in_group(servers.items, request.name),
            remote_proxies=_in_group(proxies.items, request.name),
        )
