"""Pure planning of an MCPRemoteProxy: its children, its RunConfig, its status.

- `children`: the proxy runner's ServiceAccount, Role, RoleBinding, RunConfig ConfigMap,
  Deployment and Service for a remote MCP endpoint (no StatefulSet, no MCP pods).
- `runconfigs`: the RunConfig with `remote` and `outgoing_auth` set and no workload.
- `status`: the phase from the proxy Deployment, `RemoteAvailable` from the proxy runner's
  `status.remoteCheck`.
"""
