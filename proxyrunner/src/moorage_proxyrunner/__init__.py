"""The Moorage proxy runner: fronts one MCP server with authentication, authorisation and tool filtering."""
