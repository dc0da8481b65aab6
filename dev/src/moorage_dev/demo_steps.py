"""What both demos share: how a step is printed, waiting for a condition, and the MCP client."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
NAMESPACE = "moorage-demo"
SERVER = "time"
STEPS = 7


class DemoError(RuntimeError):
    """A demo step failed; the message says which and where its log is."""


def say(step: int, message: str) -> None:
    print(f"\n[{step}/{STEPS}] {message}", flush=True)


def detail(message: str) -> None:
    print(f"      {message}", flush=True)


def wait_for(what: str, check: Callable[[], Any], *, timeout: float, interval: float = 0.25) -> Any:
    """Poll `check` until it returns something truthy; a `DemoError` naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            result = check()
        except (subprocess.CalledProcessError, OSError, ValueError, KeyError) as exc:
            last = str(exc)
            result = None
        if result:
            return result
        time.sleep(interval)
    raise DemoError(
        f"timed out after {timeout:.0f}s waiting for {what}{': ' + last if last else ''}"
    )


async def use_client(url: str) -> None:
    """List the tools at `url` and call one, printing both, with the `mcp` SDK's client."""
    from mcp import Client

    async with Client(url, mode="legacy") as client:
        tools = await client.list_tools()
        for tool in tools.tools:
            detail(f"tool {tool.name}: {(tool.description or '').splitlines()[0]}")
        name = "now" if any(t.name == "now" for t in tools.tools) else tools.tools[0].name
        result = await client.call_tool(name, {"timezone": "UTC"})
        text = " ".join(getattr(c, "text", "") for c in result.content)
        with contextlib.suppress(ValueError):
            text = json.dumps(json.loads(text))
        detail(f"call {name}(timezone=UTC) -> {text}")
