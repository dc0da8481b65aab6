"""The MCP server's workload in a cluster: pure builders, the pod patch, the manager."""
