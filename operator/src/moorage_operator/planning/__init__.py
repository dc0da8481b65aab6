"""Pure desired-state builders of the operator: what should exist, computed from what is.

No I/O, no asyncio, no Kubernetes client, no metrics (an import-linter contract enforces it).
The reconcilers (`moorage_operator.reconcilers`) read caches, call these functions and write the
result; everything here is synchronous and table-tested.

- `children`: the objects of spec §3 for an MCPServer (`desired_children`, `plan_mcpserver`).
- `runconfigs`: the RunConfig (spec §3.1) rendered into `<name>-runconfig`.
- `references`: what an MCPServer references and what that resolved to.
- `podtemplates`: the structural check behind `PodTemplateValid`.
- `serverstatus`: an MCPServer's phase, conditions and status.
- `toolconfigs`: an MCPToolConfig's status and deletion protection.
- `conditions`: `metav1.Condition` bookkeeping and status patches.
- `comparing`: whether a live object already holds what we would apply.
"""

from moorage_operator.planning.children import (
    PlanningError,
    PlanningSettings,
    ServerPlan,
    desired_children,
    plan_mcpserver,
)
from moorage_operator.planning.references import References
from moorage_operator.planning.serverstatus import Observed, compute_status

__all__ = [
    "Observed",
    "PlanningError",
    "PlanningSettings",
    "References",
    "ServerPlan",
    "compute_status",
    "desired_children",
    "plan_mcpserver",
]
