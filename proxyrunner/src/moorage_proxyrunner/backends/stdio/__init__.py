"""The stdio backend: one MCP server process shared by every client."""
