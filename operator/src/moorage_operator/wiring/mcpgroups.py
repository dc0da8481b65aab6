"""How the MCPGroup controller is wired into the manager.

`register_mcpgroup_controller(manager)`: the `mcpgroup` controller (primary MCPGroups) indexes
MCPServers and MCPRemoteProxies by the group they name and follows each of them to that group
(old and new on a change), so a member joining, leaving or changing phase updates the group's
status, and the last member leaving releases a group being deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from moorage_core.kube import MCPGROUPS, MCPREMOTEPROXIES, MCPSERVERS
from moorage_operator.planning.mcpgroups import group_index_values
from moorage_operator.reconcilers.mcpgroups import MCPGroupReconciler
from moorage_operator.reconcilers.mcpservers import utc_now
from moorage_operator.reconcilers.pending import PendingWrites
from moorage_operator.runtime.controller import Controller, Request
from moorage_operator.runtime.manager import Manager
from moorage_operator.wiring.references import index_references

MCPGROUP_CONTROLLER: Final = "mcpgroup"


def group_of_member(obj: Mapping[str, Any]) -> list[Request]:
    """The MCPGroup an MCPServer or MCPRemoteProxy names, as a request of the group controller."""
    return [Request(*value.split("/", 1)) for value in group_index_values(obj)]


def register_mcpgroup_controller(manager: Manager) -> Controller:
    """Add the `mcpgroup` controller to `manager`; return it."""
    groups = manager.informer(MCPGROUPS)
    servers = manager.informer(MCPSERVERS)
    remote_proxies = manager.informer(MCPREMOTEPROXIES)
    index_references(servers.cache)
    index_references(remote_proxies.cache)
    pending = PendingWrites()
    groups.add_handler(pending.forgetting_handler(MCPGROUPS))
    controller = manager.add_controller(
        MCPGROUP_CONTROLLER,
        MCPGroupReconciler(
            kube=manager.kube,
            groups=groups.cache,
            servers=servers.cache,
            remote_proxies=remote_proxies.cache,
            pending=pending,
            clock=utc_now,
        ),
        for_kind=MCPGROUPS,
    )
    controller.watches(servers, group_of_member)
    controller.watches(remote_proxies, group_of_member)
    return controller
