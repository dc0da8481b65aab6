"""Each legacy client session of the bridge gets its own backend sessions: opened on first
use, closed when the client session ends; the proxy's own and modern-era requests use the
aggregator's shared session."""

from __future__ import annotations

import asyncio
from typing import Any

from unit.aggregate.test_aggregate_routing import FakeSession, build, next_line

from moorage_api.runconfig import RunConfigOutgoingAuth
from moorage_proxyrunner.backends.aggregate.session import BackendUnavailable
from moorage_proxyrunner.backends.remote.client import OutgoingRefused
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


def with_client_sessions(
    kind: type[ClosingFake] = ClosingFake,
) -> tuple[Any, dict[str, Any], FakeBridge, list[ClosingFake]]:
    aggregator, fakes = build({"strategy": "prefix"})
    for fake in fakes.values():
        fake.release.set()
    opened: list[ClosingFake] = []

    def new_session(backend: Any) -> ClosingFake:
        session = kind(backend.name)
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


class RefusingFake(ClosingFake):
    """A backend session whose caller cannot be acted for (its token was not exchanged)."""

    async def request(self, method: str, params: Any, request_id: int) -> dict[str, Any]:
        if method == "tools/call":
            raise OutgoingRefused("the exchange was refused: invalid_grant", status=403)
        return await super().request(method, params, request_id)


class HoldingFake(ClosingFake):
    """Holds `tools/call` until released."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.release.clear()


async def test_a_refused_caller_is_answered_and_the_backend_stays_healthy() -> None:
    aggregator, _, bridge, _ = with_client_sessions(RefusingFake)
    channel = await aggregator.open_channel()
    await aggregator.check_all()
    bridge.callers[1] = Peer(key="s1")
    await channel.send(call(1, "a_echo"))
    answer = await next_line(channel)
    assert answer["error"]["code"] == -32003
    assert "refused the caller" in answer["error"]["message"]
    assert answer["error"]["data"] == {"backend": "a"}
    assert aggregator.members["a"].healthy is True


async def test_a_token_exchange_backend_refusing_the_aggregators_own_session_is_up() -> None:
    aggregator, fakes = build({"strategy": "prefix"})
    member = aggregator.members["a"]
    member.config = member.config.model_copy(
        update={
            "outgoing_auth": RunConfigOutgoingAuth.model_validate(
                {
                    "type": "tokenExchange",
                    "config_name": "x",
                    "token_exchange": {"token_url": "https://idp.example/token", "client_id": "c"},
                }
            )
        }
    )
    fakes["a"].is_open = False

    async def refuse() -> dict[str, Any]:
        raise BackendUnavailable("HTTP 401: ", status=401)

    fakes["a"].open = refuse  # type: ignore[method-assign]
    await aggregator.check_all()
    assert member.healthy is True
    # The same refusal from a backend that does not exchange tokens is a failure.
    fakes["b"].is_open = False
    fakes["b"].open = refuse  # type: ignore[method-assign]
    await aggregator.check_all()
    assert aggregator.members["b"].healthy is False


async def test_a_backends_request_is_related_to_the_call_in_flight_on_its_clients_session() -> None:
    aggregator, fakes, bridge, opened = with_client_sessions(HoldingFake)
    channel = await aggregator.open_channel()
    bridge.callers.update({1: Peer(key="s1"), 2: Peer(key="s2")})
    await channel.send(call(1, "a_echo"))
    await channel.send(call(2, "a_echo"))
    await asyncio.sleep(0.05)
    first, second = opened
    await aggregator._deliver(second, {"jsonrpc": "2.0", "id": 9, "method": "elicitation/create"})
    await aggregator._deliver(first, {"jsonrpc": "2.0", "id": 9, "method": "elicitation/create"})
    await aggregator._deliver(
        fakes["a"], {"jsonrpc": "2.0", "id": 9, "method": "elicitation/create"}
    )
    keys = [(await next_line(channel))["id"] for _ in range(3)]
    assert [aggregator.related(key) for key in keys] == [2, 1, None]
    for session in opened:
        session.release.set()
