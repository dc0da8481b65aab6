"""Thin I/O shells around the planners: read caches, plan (pure), apply, patch status.

- `mcpservers`: MCPServer → its children (spec §3) and status.
- `mcptoolconfigs`: MCPToolConfig → status and the finalizer protecting a config in use.
- `pending`: our writes the caches have not shown yet (so a quick second reconcile does not
  repeat them).
- `wiring`: `register_mcp_controllers(manager, settings)`, what `moorage_operator.controllers`
  calls to run them.

Decisions live in `moorage_operator.planning`; nothing here computes desired state.
"""

from moorage_operator.reconcilers.mcpservers import MCPServerReconciler
from moorage_operator.reconcilers.mcptoolconfigs import MCPToolConfigReconciler
from moorage_operator.reconcilers.wiring import register_mcp_controllers

__all__ = ["MCPServerReconciler", "MCPToolConfigReconciler", "register_mcp_controllers"]
