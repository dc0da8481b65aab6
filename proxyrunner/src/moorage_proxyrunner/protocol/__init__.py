"""The MCP protocol as the proxy reads it: JSON-RPC, eras, SSE framing, the pipeline seam (pure)."""
