"""A stdio proxy replica attaches only to the backend pod whose ordinal's Lease it holds: it claims
before attaching, the attach factory is told to pick that pod, losing the Lease ends the channel
and closing the factory releases the Lease."""

from __future__ import annotations

import asyncio
from typing import Any

from moorage_proxyrunner.backends.stdio.attach import PodChooser, PodRef
from moorage_proxyrunner.startup.stdioleases import LeasedChannelFactory


def pod(name: str, *, ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": f"uid-{name}"},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


class FakeLease:
    """An `OrdinalLease` whose claims and losses the test decides."""

    statefulset = "time"

    def __init__(self, ordinal: int) -> None:
        self._next = ordinal
        self.ordinal: int | None = None
        self.lost = asyncio.Event()
        self.released = False

    async def claim(self) -> int:
        self.ordinal = self._next
        return self._next

    async def keep(self) -> None:
        await self.lost.wait()
        self.ordinal = None

    async def release(self) -> None:
        self.released = True
        self.ordinal = None


class FakeChannel:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    async def send(self, line: bytes) -> None:
        raise AssertionError("not used")

    async def receive(self) -> bytes:
        raise AssertionError("not used")

    async def close(self) -> None:
        self.closed = True


class FakeAttach:
    """Attaches to whatever pod the chooser picks among `pods`."""

    def __init__(self, choose: PodChooser, pods: list[dict[str, Any]]) -> None:
        self.choose = choose
        self.pods = pods
        self.closed = False

    async def __call__(self) -> FakeChannel:
        picked = self.choose(self.pods)
        assert isinstance(picked, PodRef), "nothing to attach to"
        return FakeChannel(picked.name)

    async def aclose(self) -> None:
        self.closed = True


PODS = [pod("time-0"), pod("time-1"), pod("time-2", ready=False)]


def factory(lease: FakeLease) -> tuple[LeasedChannelFactory, list[FakeAttach]]:
    made: list[FakeAttach] = []

    def attach(choose: PodChooser) -> Any:
        made.append(FakeAttach(choose, PODS))
        return made[-1]

    return LeasedChannelFactory(lease, attach=attach), made  # type: ignore[arg-type]


async def test_the_replica_attaches_to_the_pod_of_its_ordinal_only() -> None:
    lease = FakeLease(1)
    leased, made = factory(lease)
    assert made[0].choose(PODS) is None, "no ordinal held yet: nothing to pick"
    channel = await leased()
    assert isinstance(channel, FakeChannel)
    assert channel.name == "time-1"
    await leased.aclose()


async def test_an_unready_ordinal_pod_is_not_picked() -> None:
    lease = FakeLease(2)
    leased, made = factory(lease)
    await lease.claim()
    assert made[0].choose(PODS) is None
    await leased.aclose()


async def test_losing_the_lease_ends_the_channel_and_closing_releases_it() -> None:
    lease = FakeLease(0)
    leased, made = factory(lease)
    channel = await leased()
    assert isinstance(channel, FakeChannel)
    lease.lost.set()
    for _ in range(10):
        if channel.closed:
            break
        await asyncio.sleep(0)
    assert channel.closed
    assert lease.ordinal is None
    lease.lost.clear()
    again = await leased()
    assert isinstance(again, FakeChannel)
    assert again.name == "time-0", "claimed again before attaching again"
    await leased.aclose()
    assert lease.released
    assert made[0].closed
