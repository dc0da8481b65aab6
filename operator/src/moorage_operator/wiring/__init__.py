"""Where the operator's reconcilers are registered with the manager.

`build_controllers` is called once by the entry point, after the manager is built and before it
runs. Each reconciler (`moorage_operator.reconcilers`) is wired here, by kind: `mcpservers`
wires MCPServers and MCPToolConfigs (they share informers and the memory of pending writes),
`mcpremoteproxies` MCPRemoteProxies and MCPExternalAuthConfigs, `mcpgroups` MCPGroups,
`virtualmcpservers` VirtualMCPServers,
`mcpregistries` MCPRegistries; `references` holds what the proxy owners' wiring shares. Wiring means a controller for the primary kind
(`manager.add_controller`), the kinds it owns (`controller.owns(manager.owned_informer(KIND))`,
mapped to the owner through the controller ownerReference) and the kinds it reads
(`controller.watches(manager.informer(KIND), mapper)`).
"""

from __future__ import annotations

from moorage_operator.runtime.controller import Controller
from moorage_operator.runtime.manager import Manager
from moorage_operator.settings import OperatorSettings
from moorage_operator.wiring.mcpgroups import register_mcpgroup_controller
from moorage_operator.wiring.mcpregistries import register_mcpregistry_controller
from moorage_operator.wiring.mcpremoteproxies import (
    register_mcpexternalauthconfig_controller,
    register_mcpremoteproxy_controller,
)
from moorage_operator.wiring.mcpservers import register_mcp_controllers
from moorage_operator.wiring.virtualmcpservers import register_virtualmcpserver_controller


def build_controllers(manager: Manager, settings: OperatorSettings) -> list[Controller]:
    """Register every reconciler with `manager`; return the controllers created."""
    return [
        *register_proxy_controllers(manager, settings),
        register_mcpregistry_controller(manager, settings),
    ]


def register_proxy_controllers(manager: Manager, settings: OperatorSettings) -> list[Controller]:
    """The controllers of MCPServers, MCPRemoteProxies and what they reference or join
    (MCPToolConfigs, MCPExternalAuthConfigs, MCPGroups), and the VirtualMCPServers aggregating
    the groups."""
    return [
        *register_mcp_controllers(manager, settings),
        register_mcpremoteproxy_controller(manager, settings),
        register_mcpexternalauthconfig_controller(manager),
        register_mcpgroup_controller(manager),
        register_virtualmcpserver_controller(manager, settings),
    ]
