"""Backends: how the proxy reaches the MCP server (a stdio process or an HTTP server)."""
