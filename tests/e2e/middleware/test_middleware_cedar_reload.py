"""A running proxy process that is handed a Cedar policy which would crash the parser stays up,
keeps enforcing its last good policy, and reports the refused one (log, metrics).

The proxy runs as its own process (`run --local --config`) in front of `mcp-server-time`, so that
a crash of the native parser would show as the process's death rather than the test's.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from mcp.shared.exceptions import MCPError
from middlewarekit import TIME_SERVER, bearer_client
from testkit.cedarattacks import CRASHING_POLICIES
from testkit.commands import free_port
from testkit.waiting import eventually

pytestmark = pytest.mark.e2e

GOOD = 'permit(principal, action == Action::"call_tool", resource == Tool::"get_current_time");'
CONVERT = {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}


def _runconfig(policy: str) -> str:
    return json.dumps({"schema_version": "moorage/v1", "authz": {"policies": [policy]}})


async def _metrics(base: str) -> dict[str, float]:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as resp:
            text = await resp.text()
    except aiohttp.ClientConnectionError:
        return {}
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


async def _denied(client: Any, name: str, arguments: dict[str, Any]) -> bool:
    try:
        await client.call_tool(name, arguments)
    except MCPError as exc:
        return exc.error.code == -32003
    return False


@pytest.mark.parametrize("shape", sorted(CRASHING_POLICIES))
async def test_a_crashing_policy_is_refused_and_the_old_one_stays_in_force(
    tmp_path: Path, shape: str
) -> None:
    config = tmp_path / "runconfig.json"
    config.write_text(_runconfig(GOOD))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "moorage_proxyrunner",
        "run",
        "--local",
        "--port",
        str(port),
        "--config",
        str(config),
        "--log-format",
        "json",
        "--",
        *TIME_SERVER,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:

        async def serving() -> bool:
            return "moorage_proxy_config_generation" in await _metrics(base)

        await eventually(serving, timeout=60, message="proxy serving")
        async with bearer_client(f"{base}/mcp", None, mode="legacy") as client:
            assert not (await client.call_tool("get_current_time", {"timezone": "UTC"})).is_error
            assert await _denied(client, "convert_time", CONVERT)

            config.write_text(_runconfig(CRASHING_POLICIES[shape]))

            async def refused() -> bool:
                samples = await _metrics(base)
                return samples.get('moorage_proxy_config_reloads_total{result="rejected"}') == 1

            await eventually(refused, timeout=30, message="crashing policy refused")
            assert process.returncode is None, "the proxy process is still running"
            assert (await _metrics(base)).get("moorage_proxy_config_rejected") == 1
            # The old policy is still the one deciding, on the same session.
            assert not (await client.call_tool("get_current_time", {"timezone": "UTC"})).is_error
            assert await _denied(client, "convert_time", CONVERT)
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), timeout=30)
    assert process.returncode == 0, "the proxy ended cleanly on SIGTERM, it did not crash"
    assert process.stdout is not None
    output = await process.stdout.read()
    events = [json.loads(line) for line in output.splitlines() if line.startswith(b"{")]
    rejected = [e for e in events if e.get("event") == "runconfig_reload_rejected"]
    assert len(rejected) == 1
    assert "authz.policies[0]" in rejected[0]["error"]
    assert "at most" in rejected[0]["error"]
