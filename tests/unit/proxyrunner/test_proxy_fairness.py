"""Round-robin admission to a shared stdio server: who is written next, and who is refused."""

from __future__ import annotations

import asyncio

import pytest

from moorage_proxyrunner.backends.stdio.fairness import FairGate, GateFull, RoundRobin


def test_a_freed_slot_goes_to_the_key_served_least_recently() -> None:
    turns: RoundRobin[str] = RoundRobin(per_key=10, total=1)
    assert turns.enter("flooder", "f1")
    for ticket in ("f2", "f3", "f4"):
        assert not turns.enter("flooder", ticket)
    assert not turns.enter("other", "o1")
    assert not turns.enter("third", "t1")
    order = []
    key = "flooder"
    while (admitted := turns.leave(key)) is not None:
        key, ticket = admitted
        order.append(ticket)
    assert order == ["o1", "t1", "f2", "f3", "f4"]
    assert turns.admitted == 0
    assert turns.held == {}
    assert turns.served == {}


def test_sessions_take_turns_while_both_have_requests_waiting() -> None:
    turns: RoundRobin[str] = RoundRobin(per_key=10, total=1)
    assert turns.enter("a", "a1")
    for ticket in ("a2", "a3"):
        turns.enter("a", ticket)
    for ticket in ("b1", "b2"):
        turns.enter("b", ticket)
    order = []
    key = "a"
    while (admitted := turns.leave(key)) is not None:
        key, ticket = admitted
        order.append(ticket)
    assert order == ["b1", "a2", "b2", "a3"]


def test_a_key_holding_its_share_is_refused_and_others_are_not() -> None:
    turns: RoundRobin[str] = RoundRobin(per_key=2, total=1)
    assert turns.enter("a", "a1")
    assert not turns.enter("a", "a2")
    with pytest.raises(GateFull):
        turns.enter("a", "a3")
    assert not turns.enter("b", "b1")


def test_a_withdrawn_ticket_frees_its_share() -> None:
    turns: RoundRobin[str] = RoundRobin(per_key=2, total=1)
    turns.enter("a", "a1")
    turns.enter("a", "a2")
    assert turns.withdraw("a", "a2")
    assert not turns.withdraw("a", "a2")
    assert not turns.enter("a", "a3")
    assert turns.leave("a") == ("a", "a3")


async def test_a_cancelled_waiter_gives_its_turn_on() -> None:
    gate = FairGate(per_key=5, total=1)
    entered: list[str] = []
    release = asyncio.Event()

    async def request(key: str) -> None:
        async with gate.slot(key):
            entered.append(key)
            await release.wait()

    first = asyncio.create_task(request("a"))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(request(k)) for k in ("b", "c")]
    await asyncio.sleep(0)
    assert gate.waiting == 2
    waiting[0].cancel()
    release.set()
    await asyncio.gather(first, waiting[1], return_exceptions=True)
    assert entered == ["a", "c"]
    assert gate.admitted == 0
    assert gate.waiting == 0
