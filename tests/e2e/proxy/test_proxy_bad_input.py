"""Every way a client or the backend can misbehave has a defined outcome."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from mcp import Client
from mcp.shared.exceptions import MCPError
from proxykit import JSON, Proxy, call, initialize, running_proxy, stdio_backend
from testkit.waiting import eventually

pytestmark = pytest.mark.e2e

MODERN = "2026-07-28"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
}


@pytest_asyncio.fixture
async def proxy() -> AsyncIterator[Proxy]:
    async with running_proxy(stdio_backend(), max_body_bytes=64 * 1024) as running:
        yield running


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def modern_headers(method: str, name: str | None = None) -> dict[str, str]:
    headers = {**JSON, "MCP-Protocol-Version": MODERN, "Mcp-Method": method}
    if name is not None:
        headers["Mcp-Name"] = name
    return headers


async def test_malformed_json_is_a_parse_error_with_400(
    proxy: Proxy, http: aiohttp.ClientSession
) -> None:
    async with http.post(proxy.mcp, data=b'{"jsonrpc": "2.0", "id": 1,', headers=JSON) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32700, "message": body["error"]["message"]},
    }


async def test_a_body_over_the_limit_is_refused_with_413(
    proxy: Proxy, http: aiohttp.ClientSession
) -> None:
    session_id = await initialize(http, proxy.mcp)
    big = call("echo", {"text": "x" * 100_000})
    async with http.post(
        proxy.mcp, json=big, headers={**JSON, "Mcp-Session-Id": session_id}
    ) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"]["code"] == -32600
    assert proxy.metric("moorage_proxy_requests_total", {"method": "unknown", "status": "413"}) == 1


async def test_a_body_just_under_the_limit_is_served(
    proxy: Proxy, http: aiohttp.ClientSession
) -> None:
    session_id = await initialize(http, proxy.mcp)
    text = "y" * 60_000
    async with http.post(
        proxy.mcp, json=call("echo", {"text": text}), headers={**JSON, "Mcp-Session-Id": session_id}
    ) as resp:
        assert resp.status == 200
        assert (await resp.json())["result"]["content"][0]["text"] == text


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Content-Type": "text/plain", "Accept": "application/json"}, 415),
        ({"Content-Type": "application/json", "Accept": "text/html"}, 406),
    ],
    ids=["wrong-content-type", "unacceptable-accept"],
)
async def test_wrong_media_types_are_refused(
    proxy: Proxy, http: aiohttp.ClientSession, headers: dict[str, str], status: int
) -> None:
    async with http.post(
        proxy.mcp, data=json.dumps(call("echo", {"text": "a"})), headers=headers
    ) as resp:
        assert resp.status == status
        assert (await resp.json())["error"]["code"] == -32600


async def test_a_batch_is_rejected_with_a_jsonrpc_error(
    proxy: Proxy, http: aiohttp.ClientSession
) -> None:
    session_id = await initialize(http, proxy.mcp)
    batch = [call("echo", {"text": "a"}, 1), call("echo", {"text": "b"}, 2)]
    async with http.post(
        proxy.mcp, json=batch, headers={**JSON, "Mcp-Session-Id": session_id}
    ) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["error"]["code"] == -32600
    assert "batch" in body["error"]["message"].lower()


@pytest.mark.parametrize(
    ("session", "status"),
    [(None, 400), ("no-such-session", 404)],
    ids=["missing-session", "unknown-session"],
)
async def test_requests_outside_a_live_session_are_refused(
    proxy: Proxy, http: aiohttp.ClientSession, session: str | None, status: int
) -> None:
    headers = dict(JSON) if session is None else {**JSON, "Mcp-Session-Id": session}
    async with http.post(proxy.mcp, json=call("echo", {"text": "a"}), headers=headers) as resp:
        assert resp.status == status
        assert (await resp.json())["error"]["code"] == -32600
    async with http.get(
        proxy.mcp,
        headers={"Accept": "text/event-stream", **({"Mcp-Session-Id": session} if session else {})},
    ) as resp:
        assert resp.status == status


async def test_a_deleted_session_is_unknown_afterwards(
    proxy: Proxy, http: aiohttp.ClientSession
) -> None:
    session_id = await initialize(http, proxy.mcp)
    async with http.delete(proxy.mcp, headers={"Mcp-Session-Id": session_id}) as resp:
        assert resp.status == 200
    async with http.post(
        proxy.mcp, json=call("echo", {"text": "a"}), headers={**JSON, "Mcp-Session-Id": session_id}
    ) as resp:
        assert resp.status == 404


async def test_unknown_sse_session_is_404(proxy: Proxy, http: aiohttp.ClientSession) -> None:
    async with http.post(
        f"{proxy.base}/messages?session_id=nope", json=call("echo", {"text": "a"}), headers=JSON
    ) as resp:
        assert resp.status == 404


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        (modern_headers("tools/list"), 400, -32020),
        ({**modern_headers("tools/call", "other_tool")}, 400, -32020),
        (
            {
                **JSON,
                "MCP-Protocol-Version": "2099-01-01",
                "Mcp-Method": "tools/call",
                "Mcp-Name": "echo",
            },
            400,
            -32020,
        ),
    ],
    ids=["method-mismatch", "name-mismatch", "version-mismatch"],
)
async def test_modern_headers_must_match_the_body(
    proxy: Proxy, http: aiohttp.ClientSession, headers: dict[str, str], status: int, code: int
) -> None:
    body = call("echo", {"text": "a"})
    body["params"]["_meta"] = ENVELOPE
    async with http.post(proxy.mcp, json=body, headers=headers) as resp:
        assert resp.status == status
        reply = await resp.json()
    assert reply["error"]["code"] == code
    assert reply["id"] == 7


async def test_a_modern_request_without_its_envelope_is_invalid_params(
    proxy: Proxy, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        proxy.mcp, json=call("echo", {"text": "a"}), headers=modern_headers("tools/call", "echo")
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == -32602


async def test_initialize_is_not_a_modern_method(proxy: Proxy, http: aiohttp.ClientSession) -> None:
    body = {"jsonrpc": "2.0", "id": 3, "method": "initialize", "params": {"_meta": ENVELOPE}}
    async with http.post(proxy.mcp, json=body, headers=modern_headers("initialize")) as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == -32601


async def test_a_bad_host_or_origin_is_refused(proxy: Proxy, http: aiohttp.ClientSession) -> None:
    async with http.post(
        proxy.mcp, json=call("echo", {"text": "a"}), headers={**JSON, "Host": "evil.example.com"}
    ) as resp:
        assert resp.status == 421
    async with http.post(
        proxy.mcp,
        json=call("echo", {"text": "a"}),
        headers={**JSON, "Origin": "https://evil.example.com"},
    ) as resp:
        assert resp.status == 403


async def test_health_and_metrics_are_answered_by_the_proxy(
    proxy: Proxy, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{proxy.base}/health") as resp:
        assert resp.status == 200
    async with http.get(f"{proxy.base}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    assert "moorage_proxy_backend_connected 1.0" in text


async def test_a_legacy_client_leaving_mid_call_does_not_cancel_it(
    proxy: Proxy, http: aiohttp.ClientSession
) -> None:
    session_id = await initialize(http, proxy.mcp)
    headers = {**JSON, "Mcp-Session-Id": session_id}
    request = asyncio.ensure_future(
        http.post(proxy.mcp, json=call("wait", {"seconds": 1.0}), headers=headers)
    )
    await eventually(lambda: proxy.metric("moorage_proxy_backend_inflight_requests") == 1)
    request.cancel()
    # The server finishes the call (the legacy wire says leaving is not cancelling), and the
    # answer with nowhere to go is dropped; the session keeps working.
    await eventually(lambda: proxy.metric("moorage_proxy_backend_inflight_requests") == 0)
    async with http.post(
        proxy.mcp, json=call("echo", {"text": "still here"}), headers=headers
    ) as resp:
        assert (await resp.json())["result"]["content"][0]["text"] == "still here"


async def test_a_modern_client_closing_its_stream_cancels_the_call(
    proxy: Proxy, http: aiohttp.ClientSession
) -> None:
    body = call("wait", {"seconds": 60})
    body["params"]["_meta"] = ENVELOPE
    request = asyncio.ensure_future(
        http.post(proxy.mcp, json=body, headers=modern_headers("tools/call", "wait"))
    )
    await eventually(lambda: proxy.metric("moorage_proxy_backend_inflight_requests") == 1)
    request.cancel()
    # Well before the 60 s the tool would take, the proxy has cancelled it at the server.
    await eventually(
        lambda: proxy.metric("moorage_proxy_backend_inflight_requests") == 0, timeout=10
    )


async def test_a_backend_crash_mid_call_answers_with_an_error_and_the_server_restarts(
    proxy: Proxy,
) -> None:
    async with Client(proxy.mcp, mode="legacy") as client:
        first_pid = (await client.read_resource("toolbox://pid")).contents[0].text  # type: ignore[union-attr]
        with pytest.raises(Exception, match="connection ended"):
            await client.call_tool("crash", {})
        await eventually(lambda: proxy.metric("moorage_proxy_backend_restarts_total") == 1)
        await eventually(lambda: proxy.metric("moorage_proxy_backend_connected") == 1)
        second_pid = (await client.read_resource("toolbox://pid")).contents[0].text  # type: ignore[union-attr]
        echoed = await client.call_tool("echo", {"text": "after restart"})
    assert second_pid != first_pid
    assert echoed.content[0].text == "after restart"  # type: ignore[union-attr]


async def test_lines_far_over_64_kib_pass_through() -> None:
    async with running_proxy(stdio_backend()) as proxy, Client(proxy.mcp, mode="legacy") as client:
        result = await client.call_tool("big", {"size": 3 * 1024 * 1024})
    assert len(result.content[0].text) == 3 * 1024 * 1024  # type: ignore[union-attr]


async def test_a_line_over_16_mib_ends_the_connection_with_an_error_and_a_restart(
    proxy: Proxy,
) -> None:
    async with Client(proxy.mcp, mode="legacy") as client:
        with pytest.raises(MCPError, match="longer than 16777216 bytes"):
            await client.call_tool("big", {"size": 17 * 1024 * 1024})
        await eventually(lambda: proxy.metric("moorage_proxy_backend_restarts_total") == 1)
        echoed = await client.call_tool("echo", {"text": "after the oversized line"})
    assert echoed.content[0].text == "after the oversized line"  # type: ignore[union-attr]


async def test_elicitation_reaches_the_client_whose_call_asked(proxy: Proxy) -> None:
    async def answer(context: Any, params: Any) -> Any:
        from mcp.types import ElicitResult

        return ElicitResult(action="accept", content={"name": "Ada"})

    for mode in ("legacy", MODERN):
        async with Client(proxy.mcp, mode=mode, elicitation_callback=answer) as client:
            result = await client.call_tool("ask_name", {})
        assert result.content[0].text == "Hello, Ada!", mode  # type: ignore[union-attr]


async def test_elicitation_for_a_client_without_the_capability_fails_clearly(proxy: Proxy) -> None:
    async with Client(proxy.mcp, mode="legacy") as client:
        with pytest.raises(MCPError, match="does not support elicitation/create"):
            await client.call_tool("ask_name", {})
