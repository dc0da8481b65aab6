"""Registry documents in the formats an MCPRegistry syncs, for the unit and integration tests."""

from __future__ import annotations

import json


def toolhive(*names: str, tag: str = "demo") -> str:
    """A ToolHive registry document with a server per name."""
    return json.dumps(
        {
            "version": "1.0.0",
            "last_updated": "2025-01-01T00:00:00Z",
            "servers": {
                name: {
                    "description": f"The {name} server.",
                    "image": f"ghcr.io/example/{name}:1.0",
                    "transport": "stdio",
                    "tier": "Community",
                    "status": "Active",
                    "tools": [f"{name}_tool"],
                    "tags": [tag],
                }
                for name in names
            },
        }
    )
