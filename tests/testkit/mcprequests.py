"""Raw MCP request bodies and headers for tests that speak HTTP to a proxy directly."""

from __future__ import annotations

from typing import Any, Final

INITIALIZE: Final[dict[str, Any]] = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
"""An `initialize` request."""
POST_HEADERS: Final = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
}
"""What a streamable-HTTP client sends with a POST to `/mcp`."""
