"""`notifications/tools/list_changed` from a real server reaches clients through the stdio
backend as it reaches them directly.

The conformance fixture (`tests/e2e/fixtures/conformance_server.py`, the `mcp` SDK) adds a tool
and announces it when `test_trigger_tool_change` is called. A 2025-11-25 client (over
streamable HTTP, on its session's GET stream, or over legacy HTTP+SSE) is sent
`notifications/tools/list_changed`; a 2026-07-28 client gets it on a `subscriptions/listen`
stream that asked for tool list changes. Each story runs against the fixture directly (its stdio)
and through the proxy, and both must tell the same.

`tests/fixtures/startup_list_changed_server.py` (the `mcp` SDK too) announces a changed tool list
as soon as it is initialised: behind the proxy that is before any client has connected, and the
announcement reaches the first client that connects, as it reaches the server's one client
directly; a 2026-07-28 client has no `initialize` to follow, so through the proxy its first
listen stream that asks for tool list changes gets it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp import types as mcp_types
from mcp.client.sse import sse_client
from mcp.shared.subscriptions import ToolsListChanged
from proxykit import CONFORMANCE_FIXTURE, running_proxy, stdio_backend
from testkit.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

STARTUP_FIXTURE = (
    sys.executable,
    str(Path(__file__).resolve().parents[2] / "fixtures" / "startup_list_changed_server.py"),
)
CONNECTS = [
    pytest.param(lambda proxy: proxy.mcp, id="streamable-http"),
    pytest.param(lambda proxy: sse_client(proxy.sse), id="legacy-sse"),
]


class ListChanges:
    """The tool list changes one handshake-era client was told of."""

    def __init__(self) -> None:
        self.told = 0

    async def handle(self, message: Any) -> None:
        if isinstance(getattr(message, "root", message), mcp_types.ToolListChangedNotification):
            self.told += 1

    def client(self, target: Any) -> Client:
        return Client(target, mode="legacy", message_handler=self.handle)


async def _tool_names(client: Client) -> list[str]:
    return sorted(tool.name for tool in (await client.list_tools()).tools)


async def handshake_story(target: Any) -> dict[str, Any]:
    """A 2025-11-25 client calls the tool that changes the list: what it is told and lists."""
    changes = ListChanges()
    async with changes.client(target) as client:
        before = await _tool_names(client)
        await client.call_tool("test_trigger_tool_change", {})
        await eventually(lambda: changes.told == 1, message="told the tool list changed")
        return {"before": before, "told": changes.told, "after": await _tool_names(client)}


async def listen_story(target: Any) -> dict[str, Any]:
    """A 2026-07-28 client listening for tool list changes calls the tool that changes it."""
    async with (
        Client(target, mode="2026-07-28") as client,
        client.listen(tools_list_changed=True) as subscription,
    ):
        honored = subscription.honored.tools_list_changed
        before = await _tool_names(client)
        await client.call_tool("test_trigger_tool_change", {})
        event = await anext(subscription)
        return {
            "honored": honored,
            "event": type(event).__name__,
            "before": before,
            "after": await _tool_names(client),
        }


def _direct(command: tuple[str, ...]) -> StdioServerParameters:
    program, *args = command
    return StdioServerParameters(command=program, args=args)


@pytest.mark.parametrize("connect", CONNECTS)
async def test_a_handshake_era_client_is_told_the_tool_list_changed_as_directly(
    connect: Callable[[Any], Any],
) -> None:
    expected = await handshake_story(_direct((*CONFORMANCE_FIXTURE, "stdio")))
    async with running_proxy(stdio_backend((*CONFORMANCE_FIXTURE, "stdio"))) as proxy:
        assert await handshake_story(connect(proxy)) == expected
    assert "test_added_tool" in expected["after"]
    assert "test_added_tool" not in expected["before"]


async def test_a_2026_07_28_client_hears_of_the_change_on_its_listen_stream_as_directly() -> None:
    expected = await listen_story(_direct((*CONFORMANCE_FIXTURE, "stdio")))
    async with running_proxy(stdio_backend((*CONFORMANCE_FIXTURE, "stdio"))) as proxy:
        assert await listen_story(proxy.mcp) == expected
    assert expected["honored"] is True
    assert expected["event"] == ToolsListChanged.__name__
    assert "test_added_tool" in expected["after"]


async def startup_story(target: Any) -> dict[str, Any]:
    """The first client of a server that changed its tool list on start-up."""
    changes = ListChanges()
    async with changes.client(target) as client:
        await eventually(lambda: changes.told == 1, message="told the tool list changed")
        return {"told": changes.told, "tools": await _tool_names(client)}


@pytest.mark.parametrize("connect", CONNECTS)
async def test_a_change_announced_before_any_client_reaches_the_first_one(
    connect: Callable[[Any], Any],
) -> None:
    expected = await startup_story(_direct(STARTUP_FIXTURE))
    async with running_proxy(stdio_backend(STARTUP_FIXTURE)) as proxy:
        assert await startup_story(connect(proxy)) == expected
        # Only the first: anyone connecting later lists what is there now.
        assert await _told_later(proxy.mcp) == 0
    assert expected == {"told": 1, "tools": ["early_tool", "late_tool"]}


async def _told_later(target: Any) -> int:
    changes = ListChanges()
    async with changes.client(target) as client:
        await client.list_tools()
    return changes.told


async def test_a_change_announced_before_any_client_reaches_the_first_listen_stream() -> None:
    async with (
        running_proxy(stdio_backend(STARTUP_FIXTURE)) as proxy,
        Client(proxy.mcp, mode="2026-07-28") as client,
        client.listen(tools_list_changed=True) as subscription,
    ):
        assert subscription.honored.tools_list_changed is True
        assert isinstance(await anext(subscription), ToolsListChanged)
        assert await _tool_names(client) == ["early_tool", "late_tool"]
