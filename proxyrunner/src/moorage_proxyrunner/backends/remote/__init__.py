"""The proxy in front of an MCP server it does not run: outgoing headers, authentication and checks."""
