"""Pure desired-state builders of the operator: what should exist, computed from what is.

No I/O, no asyncio, no Kubernetes client, no metrics (an import-linter contract enforces it).
The reconcilers (`moorage_operator.reconcilers`) read caches, call these functions and write the
result; everything here is synchronous and table-tested.

- `mcpservers/`: an MCPServer's children (spec §3), RunConfig, references and status.
- `proxies`: the proxy runner's children (RBAC, RunConfig ConfigMap, Deployment, Service), built
  alike for every kind that runs one.
- `externalauth`: outgoing authentication and the Secret-backed env of the proxy container.
- `mcptoolconfigs`: an MCPToolConfig's status and deletion protection.
- `mcpregistries/`: an MCPRegistry's sync, storage, registry server and status.
- `conditions`: `metav1.Condition` bookkeeping and status patches.
- `comparing`: whether a live object already holds what we would apply.
"""

from moorage_operator.planning.mcpservers.children import (
    PlanningError,
    PlanningSettings,
    ServerPlan,
    desired_children,
    plan_mcpserver,
)
from moorage_operator.planning.mcpservers.references import References
from moorage_operator.planning.mcpservers.status import Observed, compute_status

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
