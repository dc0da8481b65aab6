"""The HTTP backend: a streaming reverse proxy to an MCP server that speaks HTTP."""
