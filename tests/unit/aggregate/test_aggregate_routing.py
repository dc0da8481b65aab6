"""The aggregator between the bridge and its backends: ids, cancellations, server requests,
list changes and a backend that is down, with stand-in backend sessions."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from moorage_api.runconfig import RunConfigAggregate
from moorage_proxyrunner.backends.aggregate.server import Aggregator
from moorage_proxyrunner.backends.aggregate.session import BackendUnavailable
from moorage_proxyrunner.backends.reverse.upstream import Client

TOOLS = {"a": [{"name": "echo"}, {"name": "only_a"}], "b": [{"name": "echo"}]}


class FakeSession:
    """Answers lists from `TOOLS`; holds `tools/call` until released; records what it is sent."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[dict[str, Any]] = []
        self.calls: list[tuple[str, Any, int]] = []
        self.release = asyncio.Event()
        self.down = False
        self.is_open = True
        self._ids = 100

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    async def open(self) -> dict[str, Any]:
        if self.down:
            raise BackendUnavailable("connection refused")
        return {"capabilities": {"tools": {}}}

    async def request(self, method: str, params: Any, request_id: int) -> dict[str, Any]:
        if self.down:
            raise BackendUnavailable("connection refused")
        self.calls.append((method, params, request_id))
        if method == "tools/list":
            return {"jsonrpc": "2.0", "id": request_id, "result": {"tools": TOOLS[self.name]}}
        if method == "tools/call":
            await self.release.wait()
            text = f"{self.name}:{params['name']}"
            return {"jsonrpc": "2.0", "id": request_id, "result": {"content": [{"text": text}]}}
        return {"jsonrpc": "2.0", "id": request_id, "result": {}}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def reset(self) -> None:
        self.is_open = False

    async def listen(self) -> None:
        pass

    async def close(self) -> None:
        pass


def build(strategy: dict[str, Any]) -> tuple[Aggregator, dict[str, FakeSession]]:
    config = RunConfigAggregate.model_validate(
        {
            "backends": [
                {"name": "a", "url": "http://127.0.0.1:1/mcp"},
                {"name": "b", "url": "http://127.0.0.1:2/mcp"},
            ],
            "conflict_resolution": strategy,
        }
    )
    aggregator = Aggregator(config, {"a": Client(), "b": Client()}, server_name="hub")
    fakes = {name: FakeSession(name) for name in ("a", "b")}
    for name, member in aggregator.members.items():
        member.session = fakes[name]  # type: ignore[assignment]
    return aggregator, fakes


async def next_line(channel: Any) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(await asyncio.wait_for(channel.receive(), 5))
    return decoded


async def test_a_call_goes_to_the_owner_under_its_own_name_and_its_answer_under_the_bridges_id() -> (
    None
):
    aggregator, fakes = build({"strategy": "prefix"})
    channel = await aggregator.open_channel()
    await channel.send(b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}')
    listed = await next_line(channel)
    assert [t["name"] for t in listed["result"]["tools"]] == ["a_echo", "a_only_a", "b_echo"]
    fakes["b"].release.set()
    await channel.send(
        b'{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"b_echo"}}'
    )
    answer = await next_line(channel)
    assert answer == {"jsonrpc": "2.0", "id": "c1", "result": {"content": [{"text": "b:echo"}]}}
    assert fakes["a"].calls[-1][0] == "tools/list"


async def test_a_cancellation_reaches_the_backend_under_its_id() -> None:
    aggregator, fakes = build({"strategy": "priority", "priority": ["b"]})
    channel = await aggregator.open_channel()
    await channel.send(b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}')
    await asyncio.sleep(0.05)
    method, params, backend_id = fakes["b"].calls[-1]
    assert (method, params["name"]) == ("tools/call", "echo")
    await channel.send(
        b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}}'
    )
    await asyncio.sleep(0.05)
    assert fakes["b"].sent == [
        {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": backend_id},
        }
    ]
    fakes["b"].release.set()
    assert (await next_line(channel))["id"] == 7


async def test_a_backends_request_gets_an_aggregator_id_and_its_answer_goes_back() -> None:
    aggregator, fakes = build({"strategy": "prefix"})
    channel = await aggregator.open_channel()

    def deliver(message: dict[str, Any]) -> Any:
        return aggregator._deliver(aggregator.members["a"].session, message)

    await deliver({"jsonrpc": "2.0", "id": 5, "method": "elicitation/create", "params": {}})
    asked = await next_line(channel)
    assert asked["id"] == "agg-1"
    assert asked["method"] == "elicitation/create"
    await channel.send(b'{"jsonrpc":"2.0","id":"agg-1","result":{"action":"decline"}}')
    await asyncio.sleep(0.05)
    assert fakes["a"].sent == [{"jsonrpc": "2.0", "id": 5, "result": {"action": "decline"}}]
    await deliver({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
    assert (await next_line(channel))["method"] == "notifications/tools/list_changed"


async def test_a_down_backend_is_left_out_and_its_names_answer_an_error_naming_it() -> None:
    aggregator, fakes = build({"strategy": "prefix"})
    channel = await aggregator.open_channel()
    await channel.send(b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}')
    await next_line(channel)
    fakes["a"].down = True
    await aggregator.check_all()
    changed = {(await next_line(channel))["method"] for _ in range(3)}
    assert "notifications/tools/list_changed" in changed
    await channel.send(b'{"jsonrpc":"2.0","id":2,"method":"tools/list"}')
    listed = await next_line(channel)
    assert [t["name"] for t in listed["result"]["tools"]] == ["b_echo"]
    await channel.send(b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"a_echo"}}')
    failed = await next_line(channel)
    assert failed["error"]["message"].startswith("backend 'a' is unavailable: connection refused")
    assert failed["error"]["data"] == {"backend": "a"}
    report = aggregator.build_report()
    assert [(h.name, h.healthy) for h in report.backend_health] == [("a", False), ("b", True)]
    fakes["a"].down = False
    await aggregator.check_all()
    await channel.send(b'{"jsonrpc":"2.0","id":4,"method":"tools/list"}')
    while "result" not in (listed := await next_line(channel)):
        pass
    assert [t["name"] for t in listed["result"]["tools"]] == ["a_echo", "a_only_a", "b_echo"]


async def test_an_unknown_name_is_invalid_params() -> None:
    aggregator, _ = build({"strategy": "prefix"})
    channel = await aggregator.open_channel()
    await channel.send(b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nope"}}')
    answer = await next_line(channel)
    assert answer["error"] == {"code": -32602, "message": "Unknown tool: nope"}
