"""Each client session of the aggregator has its own backend sessions, end to end: observed as
the active sessions of the backend's own proxy runner while two real clients use it, one
leaves, and the backend is killed and restarted; and two clients calling at once each get the
elicitation and the progress of their own call."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from e2e.aggregate.test_aggregate_e2e import (
    ECHO,
    aggregator,
    runconfig,
    start_proxy,
    stop_proxy,
    text_of,
    tool_names,
)
from e2e.proxy.proxykit import TOOLBOX, scraped, serving_toolbox
from mcp import Client
from mcp import types as mcp_types
from testkit.waiting import eventually

from moorage_dev.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

SESSIONS = "moorage_proxy_active_sessions"


async def test_two_clients_get_their_own_backend_sessions_closed_when_they_leave(
    tmp_path: Path,
) -> None:
    port = free_port()
    box = start_proxy(port, (*TOOLBOX, "stdio"))
    backend = f"http://127.0.0.1:{port}"

    def sessions_are(expected: float) -> object:
        async def check() -> bool:
            return await scraped(backend, SESSIONS) == expected

        return check

    try:
        async with aggregator(tmp_path, runconfig({"box": port}, {"strategy": "prefix"})) as base:
            # The aggregator's own session: health checks and listings.
            await eventually(sessions_are(1), message="the aggregator's own session")
            async with Client(f"{base}/mcp", mode="legacy") as first:
                assert await scraped(backend, SESSIONS) == 1, "initialising opens none"
                assert "box_echo" in await tool_names(first)
                assert await scraped(backend, SESSIONS) == 2, "its listing is its own"
                assert text_of(await first.call_tool("box_echo", ECHO)) == "hi"
                assert await scraped(backend, SESSIONS) == 2
                async with Client(f"{base}/mcp", mode="legacy") as second:
                    assert text_of(await second.call_tool("box_echo", ECHO)) == "hi"
                    assert await scraped(backend, SESSIONS) == 3
                    assert text_of(await first.call_tool("box_echo", ECHO)) == "hi"
                    assert await scraped(backend, SESSIONS) == 3, "a session is reused"
                await eventually(sessions_are(2), message="the second client's session closed")
                assert text_of(await first.call_tool("box_echo", ECHO)) == "hi"
                assert await scraped(backend, SESSIONS) == 2

                stop_proxy(box)
                box = start_proxy(port, (*TOOLBOX, "stdio"))

                async def answers() -> bool:
                    try:
                        return text_of(await first.call_tool("box_echo", ECHO)) == "hi"
                    except Exception:
                        return False

                await eventually(answers, timeout=30, message="the restarted backend answers")
                await eventually(sessions_are(2), message="both sessions opened again")
            await eventually(sessions_are(1), message="the first client's session closed")
    finally:
        stop_proxy(box)


async def test_two_clients_calling_at_once_each_get_their_own_elicitation_and_progress(
    tmp_path: Path,
) -> None:
    asked: list[str] = []
    both_asked = asyncio.Event()

    def elicit_as(name: str) -> Any:
        async def elicit(context: Any, params: Any) -> mcp_types.ElicitResult:
            asked.append(name)
            if len(asked) == 2:
                both_asked.set()
            # Both calls are in flight at once before either is answered.
            await asyncio.wait_for(both_asked.wait(), 20)
            return mcp_types.ElicitResult(action="accept", content={"name": name})

        return elicit

    progress: dict[str, list[float]] = {"Ada": [], "Bob": []}

    def progress_of(name: str) -> Any:
        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress[name].append(done)

        return on_progress

    async with serving_toolbox("http") as box_url:
        data = runconfig({}, {"strategy": "prefix"})
        data["aggregate"]["backends"].append({"name": "box", "url": box_url})
        async with (
            aggregator(tmp_path, data) as base,
            Client(f"{base}/mcp", mode="legacy", elicitation_callback=elicit_as("Ada")) as ada,
            Client(f"{base}/mcp", mode="legacy", elicitation_callback=elicit_as("Bob")) as bob,
        ):
            greetings = await asyncio.gather(
                ada.call_tool("box_ask_name", {}), bob.call_tool("box_ask_name", {})
            )
            assert [text_of(g) for g in greetings] == ["Hello, Ada!", "Hello, Bob!"]
            assert sorted(asked) == ["Ada", "Bob"]
            counted = await asyncio.gather(
                ada.call_tool(
                    "box_count", {"tag": "a", "steps": 3}, progress_callback=progress_of("Ada")
                ),
                bob.call_tool(
                    "box_count", {"tag": "b", "steps": 2}, progress_callback=progress_of("Bob")
                ),
            )
            assert [text_of(c) for c in counted] == ["a", "b"]
            assert progress == {"Ada": [1.0, 2.0, 3.0], "Bob": [1.0, 2.0]}
