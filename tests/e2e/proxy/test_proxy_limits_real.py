"""Request timeouts against real MCP servers: a request the Python SDK's stdio server drops
without an answer (arguments nested deeper than it parses) ends in the timeout error, and the
server really receives the `notifications/cancelled` (its stdin is recorded); a call an HTTP
server sits on ends in the same error."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import aiohttp
from proxykit import JSON, TOOLBOX, call, initialize, running_proxy, serving_toolbox, stdio_backend
from testkit.waiting import eventually

from moorage_proxyrunner.config.limits import REQUEST_TIMED_OUT, Limits
from moorage_proxyrunner.startup.local import LocalBackend


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def recorded_stdin(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_a_request_the_stdio_server_drops_times_out_and_the_server_is_told(
    tmp_path: Path,
) -> None:
    stdin_log = tmp_path / "stdin.jsonl"
    server = shlex.join([*TOOLBOX, "stdio"])
    command = ("sh", "-c", f"tee {shlex.quote(str(stdin_log))} | {server}")
    async with (
        running_proxy(stdio_backend(command), limits=Limits(request_timeout=1.0)) as proxy,
        aiohttp.ClientSession() as http,
    ):
        session = await initialize(http, proxy.mcp)
        headers = {**JSON, "Accept": "application/json", "Mcp-Session-Id": session}
        dropped = call("echo", {"text": "x", "deep": nested(300)}, request_id=11)
        async with http.post(proxy.mcp, json=dropped, headers=headers) as resp:
            answer = await resp.json()
        assert answer["id"] == 11
        assert answer["error"]["code"] == REQUEST_TIMED_OUT
        # The server is still fine for the next caller.
        async with http.post(
            proxy.mcp, json=call("echo", {"text": "hi"}, 12), headers=headers
        ) as resp:
            assert (await resp.json())["result"]["content"][0]["text"] == "hi"

        def cancelled() -> list[dict[str, Any]]:
            return [
                m for m in recorded_stdin(stdin_log) if m.get("method") == "notifications/cancelled"
            ]

        await eventually(lambda: bool(cancelled()), message="notifications/cancelled on stdin")
        calls = [m for m in recorded_stdin(stdin_log) if m.get("method") == "tools/call"]
        assert cancelled()[0]["params"]["requestId"] == calls[0]["id"]


async def test_a_call_the_http_server_sits_on_times_out() -> None:
    # The SDK's HTTP server answers over-nested arguments with a parse error rather than
    # dropping them; a tool that takes too long is its way to leave a request unanswered.
    async with (
        serving_toolbox("http") as url,
        running_proxy(
            LocalBackend(transport="streamable-http", target_urls=(url,)),
            limits=Limits(request_timeout=1.0),
        ) as proxy,
        aiohttp.ClientSession() as http,
    ):
        session = await initialize(http, proxy.mcp)
        headers = {**JSON, "Mcp-Session-Id": session}
        slow = call("wait", {"seconds": 60}, request_id=11)
        async with http.post(proxy.mcp, json=slow, headers=headers) as resp:
            text = await resp.text()
        answer = json.loads(text.rsplit("data: ", 1)[-1])
        assert answer["error"]["code"] == REQUEST_TIMED_OUT
