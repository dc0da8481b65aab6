"""The aggregator end to end: three real MCP servers, each behind its own proxy runner (as in a
cluster), and the aggregator's proxy runner in front of them, all on loopback.

The servers: `mcp-server-time` (PyPI), the "everything" server (npm) and the SDK toolbox; the
last two both have a tool `echo`. Lists and calls are checked under each conflict strategy in
both eras, progress and elicitation pass through, a backend whose proxy is killed leaves the
others working and comes back when restarted, and Cedar decides on the aggregated names.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.proxy.proxykit import (
    CONFORMANCE_FIXTURE,
    TIME_SERVER,
    TOOLBOX,
    node_binary,
    node_tools,
    running_proxy,
    serving_toolbox,
)
from mcp import Client, MCPError
from mcp import types as mcp_types
from mcp.client.sse import sse_client
from testkit.waiting import eventually

from moorage_dev.ports import free_port, is_port_open
from moorage_proxyrunner.policy.reload import load_local_runconfig
from moorage_proxyrunner.startup.local import LocalBackend, LocalConfig

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

MODES = ["legacy", "2026-07-28"]
PROXY_RUNNER = (sys.executable, "-m", "moorage_proxyrunner", "run", "--local")


def start_proxy(port: int, command: tuple[str, ...]) -> subprocess.Popen[bytes]:
    """A backend's own proxy runner, as its own process (so that it can be killed)."""
    process = subprocess.Popen(
        [*PROXY_RUNNER, "--port", str(port), "--", *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not is_port_open(port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the proxy of {command[0]} did not start")
        time.sleep(0.1)
    return process


def stop_proxy(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, int]]:
    """The three backends' proxies: name → port."""
    root = node_tools()
    everything = (
        node_binary(root),
        str(root / "node_modules/@modelcontextprotocol/server-everything/dist/index.js"),
        "stdio",
    )
    commands = {"time": TIME_SERVER, "everything": everything, "toolbox": (*TOOLBOX, "stdio")}
    ports = {name: free_port() for name in commands}
    processes = []
    try:
        for name, command in commands.items():
            processes.append(start_proxy(ports[name], command))
        yield ports
    finally:
        for process in processes:
            stop_proxy(process)


def runconfig(ports: dict[str, int], resolution: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "schema_version": "moorage/v1",
        "name": "hub",
        "namespace": "local",
        "aggregate": {
            "backends": [
                {"name": name, "url": f"http://127.0.0.1:{port}/mcp"}
                for name, port in ports.items()
            ],
            "conflict_resolution": resolution,
            "health_check_interval_seconds": 1,
            "backend_timeout_seconds": 20,
        },
        **extra,
    }


@contextlib.asynccontextmanager
async def aggregator(tmp_path: Path, data: dict[str, Any]) -> AsyncIterator[str]:
    """The aggregator's proxy runner in this process; yields its base URL."""
    path = tmp_path / "runconfig.json"
    path.write_text(json.dumps(data))
    config = LocalConfig(path=path, runconfig=load_local_runconfig(path.read_text()))
    # As `run --local --config` does, the middleware starts from the RunConfig's settings.
    async with running_proxy(
        LocalBackend(aggregate=True), config=config, authz=config.runconfig.authz
    ) as proxy:
        yield proxy.base


async def tool_names(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


def text_of(result: Any) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, mcp_types.TextContent))


ECHO = {"text": "hi", "message": "hi"}
"""Arguments both echo tools take: the toolbox reads `text`, the everything server `message`."""


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("resolution", "calls", "absent"),
    [
        (
            {"strategy": "prefix"},
            {"toolbox_echo": "hi", "everything_echo": "Echo: hi"},
            {"echo"},
        ),
        (
            {"strategy": "prefix", "separator": "."},
            {"toolbox.echo": "hi", "everything.echo": "Echo: hi"},
            {"toolbox_echo"},
        ),
        ({"strategy": "priority", "priority": ["toolbox"]}, {"echo": "hi"}, {"toolbox_echo"}),
        ({"strategy": "priority"}, {"echo": "Echo: hi"}, set()),
        (
            {"strategy": "manual", "manual": {"toolbox/echo": "box_echo"}},
            {"echo": "Echo: hi", "box_echo": "hi"},
            set(),
        ),
        ({"strategy": "manual"}, {}, {"echo"}),
    ],
    ids=["prefix", "prefix-dot", "priority", "priority-order", "manual", "manual-unresolved"],
)
async def test_lists_and_calls_under_each_strategy(
    backends: dict[str, int],
    tmp_path: Path,
    mode: str,
    resolution: dict[str, Any],
    calls: dict[str, str],
    absent: set[str],
) -> None:
    async with (
        aggregator(tmp_path, runconfig(backends, resolution)) as base,
        Client(f"{base}/mcp", mode=mode) as client,  # type: ignore[arg-type]
    ):
        names = await tool_names(client)
        assert set(calls) <= names
        assert not absent & names
        time_tool = (
            "time_get_current_time" if resolution["strategy"] == "prefix" else ("get_current_time")
        )
        if resolution.get("separator") == ".":
            time_tool = "time.get_current_time"
        assert time_tool in names
        for name, expected in calls.items():
            assert text_of(await client.call_tool(name, ECHO)) == expected
        assert "UTC" in text_of(await client.call_tool(time_tool, {"timezone": "UTC"}))


async def test_legacy_sse_clients_get_the_aggregate(
    backends: dict[str, int], tmp_path: Path
) -> None:
    async with (
        aggregator(tmp_path, runconfig(backends, {"strategy": "prefix"})) as base,
        Client(sse_client(f"{base}/sse"), mode="legacy") as client,
    ):
        assert "toolbox_echo" in await tool_names(client)
        assert text_of(await client.call_tool("toolbox_echo", ECHO)) == "hi"


@pytest.mark.parametrize("mode", MODES)
async def test_progress_and_elicitation_pass_through(
    backends: dict[str, int], tmp_path: Path, mode: str
) -> None:
    progress: list[tuple[float, float | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total))

    async def elicit(context: Any, params: Any) -> mcp_types.ElicitResult:
        return mcp_types.ElicitResult(action="accept", content={"name": "Ada"})

    async with (
        aggregator(tmp_path, runconfig(backends, {"strategy": "prefix"})) as base,
        Client(f"{base}/mcp", mode=mode, elicitation_callback=elicit) as client,  # type: ignore[arg-type]
    ):
        counted = await client.call_tool(
            "toolbox_count", {"tag": "t", "steps": 3}, progress_callback=on_progress
        )
        assert text_of(counted) == "t"
        assert progress == [(1.0, 3.0), (2.0, 3.0), (3.0, 3.0)]
        assert text_of(await client.call_tool("toolbox_ask_name", {})) == "Hello, Ada!"


async def test_a_killed_backend_is_left_out_and_comes_back(
    backends: dict[str, int], tmp_path: Path
) -> None:
    port = free_port()
    toolbox = start_proxy(port, (*TOOLBOX, "stdio"))
    ports = {"time": backends["time"], "box": port}
    try:
        async with (
            aggregator(tmp_path, runconfig(ports, {"strategy": "prefix"})) as base,
            Client(f"{base}/mcp", mode="legacy") as client,
        ):
            assert "box_echo" in await tool_names(client)
            stop_proxy(toolbox)
            with pytest.raises(MCPError) as failed:
                await client.call_tool("box_echo", ECHO)
            assert "backend 'box' is unavailable" in str(failed.value)

            async def box_gone() -> bool:
                return "box_echo" not in await tool_names(client)

            await eventually(box_gone, message="the dead backend's tools are left out")
            assert "UTC" in text_of(
                await client.call_tool("time_get_current_time", {"timezone": "UTC"})
            )
            toolbox = start_proxy(port, (*TOOLBOX, "stdio"))

            async def box_back() -> bool:
                return "box_echo" in await tool_names(client)

            await eventually(box_back, timeout=30, message="the backend's tools come back")
            assert text_of(await client.call_tool("box_echo", ECHO)) == "hi"
    finally:
        stop_proxy(toolbox)


POLICY = 'permit(principal, action == Action::"call_tool", resource == Tool::"toolbox_echo");'


async def test_cedar_decides_on_the_aggregated_names(
    backends: dict[str, int], tmp_path: Path
) -> None:
    data = runconfig(backends, {"strategy": "prefix"}, authz={"policies": [POLICY]})
    async with (
        aggregator(tmp_path, data) as base,
        Client(f"{base}/mcp", mode="legacy") as client,
    ):
        assert await tool_names(client) == {"toolbox_echo"}
        assert text_of(await client.call_tool("toolbox_echo", ECHO)) == "hi"
        with pytest.raises(MCPError) as denied:
            await client.call_tool("everything_echo", ECHO)
        assert denied.value.error.code == -32003


@pytest.mark.parametrize("mode", MODES)
async def test_prompts_and_resources_are_merged_and_routed(
    backends: dict[str, int], tmp_path: Path, mode: str
) -> None:
    async with (
        aggregator(tmp_path, runconfig(backends, {"strategy": "prefix"})) as base,
        Client(f"{base}/mcp", mode=mode) as client,  # type: ignore[arg-type]
    ):
        prompts = (await client.list_prompts()).prompts
        assert prompts
        assert all(p.name.startswith(("everything_", "toolbox_", "time_")) for p in prompts)
        simple = next(p for p in prompts if not any(a.required for a in p.arguments or []))
        assert (await client.get_prompt(simple.name)).messages
        resources = (await client.list_resources()).resources
        uris = {str(r.uri) for r in resources}
        assert "toolbox://pid" in uris
        assert any(uri.startswith("test://") for uri in uris)
        read = await client.read_resource("toolbox://pid")
        assert read.contents[0].text.isdigit()  # type: ignore[union-attr]
        static = next(uri for uri in sorted(uris) if uri.startswith("test://"))
        assert str((await client.read_resource(static)).contents[0].uri) == static


async def test_a_legacy_sse_backend_is_aggregated(backends: dict[str, int], tmp_path: Path) -> None:
    progress: list[tuple[float, float | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total))

    async with serving_toolbox("sse") as sse_url:
        data = runconfig({"time": backends["time"]}, {"strategy": "prefix"})
        data["aggregate"]["backends"].append({"name": "old", "url": sse_url, "transport": "sse"})
        async with (
            aggregator(tmp_path, data) as base,
            Client(f"{base}/mcp", mode="legacy") as client,
        ):
            assert {"old_echo", "time_get_current_time"} <= await tool_names(client)
            assert text_of(await client.call_tool("old_echo", ECHO)) == "hi"
            counted = await client.call_tool(
                "old_count", {"tag": "s", "steps": 2}, progress_callback=on_progress
            )
            assert text_of(counted) == "s"
            assert progress == [(1.0, 2.0), (2.0, 2.0)]


async def test_a_backends_list_change_reaches_clients(
    backends: dict[str, int], tmp_path: Path
) -> None:
    told: list[str] = []

    async def handle(message: Any) -> None:
        if isinstance(getattr(message, "root", message), mcp_types.ToolListChangedNotification):
            told.append("tools")

    port = free_port()
    conformance = start_proxy(port, (*CONFORMANCE_FIXTURE, "stdio"))
    try:
        data = runconfig({"time": backends["time"], "conf": port}, {"strategy": "prefix"})
        async with (
            aggregator(tmp_path, data) as base,
            Client(f"{base}/mcp", mode="legacy", message_handler=handle) as client,
        ):
            before = await tool_names(client)
            await client.call_tool("conf_test_trigger_tool_change", {})
            await eventually(lambda: bool(told), message="told the tool list changed")
            added = await tool_names(client) - before
            assert added
            assert all(name.startswith("conf_") for name in added)
    finally:
        stop_proxy(conformance)
