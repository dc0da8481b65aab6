"""Each legacy client session of the bridge gets its own backend sessions: opened on first
use, closed when the client session ends; the proxy's own and modern-era requests use the
aggregator's shared session."""

from __future__ import annotations

import asyncio
from typing import Any

from unit.aggregate.test_aggregate_routing import FakeSession, build, next_line

from moorage_proxyrunner.backends.stdio.peers import Peer


class FakeBridge:
    """The two things the aggregator asks of the bridge: whose request, and who left."""

    def __init__(self) -> None:
        self.callers: dict[Any, Peer] = {}
        self.on_detach: list[Any] = []

    def caller_of(self, backend_id: Any) -> Peer | None:
        return self.callers.get(backend_id)

    def detach(self, peer: Peer) -> None:
        for listener in self.on_detach:
            listener(peer)


class ClosingFake(FakeSession):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.closed = False
        self.release.set()

    async def close(self) -> None:
        self.closed = True


def with_client_sessions() -> tuple[Any, dict[str, Any], FakeBridge, list[ClosingFake]]:
    aggregator, fakes = build({"strategy": "prefix"})
    for fake in fakes.values():
        fake.release.set()
    opened: list[ClosingFake] = []

    def new_session(backend: Any) -> ClosingFake:
        session = ClosingFake(backend.name)
        opened.append(session)
        return session

    aggregator._new_session = new_session
    bridge = FakeBridge()
    aggregator.bind(bridge)
    return aggregator, fakes, bridge, opened


def call(request_id: int, name: str) -> bytes:
    return (
        f'{{"jsonrpc":"2.0","id":{request_id},"method":"tools/call","params":{{"name":"{name}"}}}}'
    ).encode()


async def test_each_client_session_gets_its_own_backend_session_opened_on_first_use() -> None:
    aggregator, fakes, bridge, opened = with_client_sessions()
    channel = await aggregator.open_channel()
    one, two = Peer(key="s1"), Peer(key="s2")
    bridge.callers.update({1: one, 2: two, 3: one})
    await channel.send(call(1, "a_echo"))
    await next_line(channel)
    assert [s.name for s in opened] == ["a"]
    await channel.send(call(2, "a_echo"))
    await next_line(channel)
    await channel.send(call(3, "a_echo"))
    await next_line(channel)
    assert [s.name for s in opened] == ["a", "a"]
    assert [c[0] for c in opened[0].calls] == ["tools/call", "tools/call"]
    assert [c[0] for c in opened[1].calls] == ["tools/call"]
    assert aggregator.members["a"].clients == {"s1": opened[0], "s2": opened[1]}
    assert aggregator.members["b"].clients == {}
    assert not any(c[0] == "tools/call" for c in fakes["a"].calls)


async def test_the_proxys_own_and_modern_requests_use_the_shared_session() -> None:
    aggregator, fakes, bridge, opened = with_client_sessions()
    channel = await aggregator.open_channel()
    bridge.callers[2] = Peer(key="m", modern=True)
    await channel.send(call(1, "b_echo"))
    await next_line(channel)
    await channel.send(call(2, "b_echo"))
    await next_line(channel)
    assert opened == []
    assert [c[0] for c in fakes["b"].calls if c[0] == "tools/call"] == ["tools/call"] * 2


async def test_a_client_session_ending_closes_its_backend_sessions_only() -> None:
    aggregator, _, bridge, opened = with_client_sessions()
    channel = await aggregator.open_channel()
    one, two = Peer(key="s1"), Peer(key="s2")
    bridge.callers.update({1: one, 2: one, 3: two})
    for request_id, name in ((1, "a_echo"), (2, "b_echo"), (3, "a_echo")):
        await channel.send(call(request_id, name))
        await next_line(channel)
    bridge.detach(one)
    await asyncio.sleep(0.05)
    assert [(s.name, s.closed) for s in opened] == [("a", True), ("b", True), ("a", False)]
    assert aggregator.members["a"].clients == {"s2": opened[2]}
    assert aggregator.members["b"].clients == {}


async def test_a_backend_going_down_resets_the_clients_sessions_for_reopening() -> None:
    aggregator, fakes, bridge, opened = with_client_sessions()
    channel = await aggregator.open_channel()
    bridge.callers[1] = Peer(key="s1")
    await channel.send(call(1, "a_echo"))
    await next_line(channel)
    fakes["a"].down = True
    await aggregator.check_all()
    assert opened[0].is_open is False
