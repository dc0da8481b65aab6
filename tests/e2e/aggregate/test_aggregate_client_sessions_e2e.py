"""Each client session of the aggregator has its own backend sessions, end to end: observed as
the active sessions of the backend's own proxy runner while two real clients use it, one
leaves, and the backend is killed and restarted."""

from __future__ import annotations

from pathlib import Path

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
from e2e.proxy.proxykit import TOOLBOX, scraped
from mcp import Client
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
