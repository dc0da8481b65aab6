"""Real MCP SDK clients through the proxy get what they get from the server directly."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from proxykit import (
    TIME_SERVER,
    running_proxy,
    serving_toolbox,
    stdio_backend,
)

from moorage_proxyrunner.startup.local import LocalBackend

pytestmark = pytest.mark.e2e

MODES = ["legacy", "2026-07-28"]
CONVERT = {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}


def _tools(result: Any) -> list[dict[str, Any]]:
    return [t.model_dump(mode="json", exclude_none=True) for t in result.tools]


def _content(result: Any) -> list[dict[str, Any]]:
    return [c.model_dump(mode="json", exclude_none=True) for c in result.content]


async def _list_and_convert(
    client: Client,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
    tools = await client.list_tools()
    called = await client.call_tool("convert_time", CONVERT)
    return _tools(tools), _content(called), called.is_error


@pytest.mark.parametrize("mode", MODES)
async def test_stdio_time_server_answers_through_the_proxy_as_it_does_directly(mode: str) -> None:
    command, *args = TIME_SERVER
    async with Client(StdioServerParameters(command=command, args=args), mode=mode) as direct:
        expected = await _list_and_convert(direct)
    async with (
        running_proxy(stdio_backend(TIME_SERVER)) as proxy,
        Client(proxy.mcp, mode=mode) as client,
    ):
        assert await _list_and_convert(client) == expected
    assert expected[0], "the time server lists tools"
    assert expected[2] is False


@pytest.mark.parametrize("mode", MODES)
async def test_http_server_answers_through_the_proxy_as_it_does_directly(mode: str) -> None:
    async with serving_toolbox("http") as url:
        async with Client(url, mode=mode) as direct:
            tools = _tools(await direct.list_tools())
            echoed = _content(await direct.call_tool("echo", {"text": "hello"}))
        backend = LocalBackend(transport="streamable-http", target_urls=(url,))
        async with running_proxy(backend) as proxy, Client(proxy.mcp, mode=mode) as client:
            assert _tools(await client.list_tools()) == tools
            assert _content(await client.call_tool("echo", {"text": "hello"})) == echoed
    assert echoed == [{"type": "text", "text": "hello"}]


async def test_sse_server_answers_through_the_proxy_as_it_does_directly() -> None:
    async with serving_toolbox("sse") as url:
        async with Client(sse_client(url), mode="legacy") as direct:
            tools = _tools(await direct.list_tools())
            echoed = _content(await direct.call_tool("echo", {"text": "over sse"}))
        backend = LocalBackend(transport="sse", target_urls=(url,))
        async with (
            running_proxy(backend) as proxy,
            Client(sse_client(proxy.sse), mode="legacy") as client,
        ):
            assert _tools(await client.list_tools()) == tools
            assert _content(await client.call_tool("echo", {"text": "over sse"})) == echoed


async def test_stdio_server_is_reachable_over_legacy_sse_too() -> None:
    async with (
        running_proxy(stdio_backend()) as proxy,
        Client(sse_client(proxy.sse), mode="legacy") as client,
    ):
        result = await client.call_tool("echo", {"text": "via /sse"})
    assert _content(result) == [{"type": "text", "text": "via /sse"}]


@pytest.mark.parametrize("mode", MODES)
async def test_twenty_clients_with_colliding_ids_each_get_their_own_answers(mode: str) -> None:
    async with running_proxy(stdio_backend()) as proxy:

        async def one(index: int) -> list[str]:
            # Every SDK client numbers its requests from the same start: the ids collide.
            async with Client(proxy.mcp, mode=mode) as client:
                answers = []
                for round_ in range(5):
                    text = f"client-{index}-round-{round_}"
                    result = await client.call_tool("echo", {"text": text})
                    answers.append(result.content[0].text)  # type: ignore[union-attr]
                return answers

        results = await asyncio.gather(*(one(i) for i in range(20)))
    for index, answers in enumerate(results):
        assert answers == [f"client-{index}-round-{r}" for r in range(5)]


@pytest.mark.parametrize("mode", MODES)
async def test_progress_reaches_only_the_client_that_asked_for_it(mode: str) -> None:
    async with running_proxy(stdio_backend()) as proxy:

        async def one(tag: str) -> tuple[str, list[str]]:
            seen: list[str] = []

            async def on_progress(
                progress: float, total: float | None, message: str | None
            ) -> None:
                seen.append(message or "")

            async with Client(proxy.mcp, mode=mode) as client:
                result = await client.call_tool(
                    "count", {"tag": tag, "steps": 5}, progress_callback=on_progress
                )
            return result.content[0].text, seen  # type: ignore[union-attr]

        results = await asyncio.gather(*(one(f"tag{i}") for i in range(6)))
    for index, (returned, seen) in enumerate(results):
        assert returned == f"tag{index}"
        assert seen == [f"tag{index} step {s}" for s in range(1, 6)]
