"""RunConfig files for the proxy runner's cluster tests: MCPServer `time`, owned by `owner`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moorage_api.runconfig import RunConfig, render_runconfig_json


def write_runconfig(
    tmp_path: Path, *, namespace: str, owner: dict[str, Any], **fields: Any
) -> Path:
    meta = owner["metadata"]
    runconfig = RunConfig.model_validate(
        {
            "name": "time",
            "namespace": namespace,
            "owner": {
                "apiVersion": owner["apiVersion"],
                "kind": owner["kind"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
            "image": "ghcr.io/example/mcp-time:1.0",
            **fields,
        }
    )
    path = tmp_path / "runconfig.json"
    path.write_text(render_runconfig_json(runconfig))
    return path
