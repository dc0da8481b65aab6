"""Thin I/O shells around the planners: read caches, plan (pure), apply, patch status.

- `mcpservers`: MCPServer → its children (spec §3) and status.
- `mcptoolconfigs`: MCPToolConfig → status and the finalizer protecting a config in use.
- `mcpregistries`: MCPRegistry → its storage ConfigMap, the registry server and status.
- `fetching`: reads an MCPRegistry's source (a ConfigMap from the cache, a git repository).
- `pending`: our writes the caches have not shown yet (so a quick second reconcile does not
  repeat them).
- `statuswrites`: a status subresource patched with only the fields that changed.

`moorage_operator.wiring` registers them with the manager.

Decisions live in `moorage_operator.planning`; nothing here computes desired state.
"""

from moorage_operator.reconcilers.mcpservers import MCPServerReconciler
from moorage_operator.reconcilers.mcptoolconfigs import MCPToolConfigReconciler

__all__ = ["MCPServerReconciler", "MCPToolConfigReconciler"]
