"""The read-only HTTP API over an MCPRegistry's synced data."""
