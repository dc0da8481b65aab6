"""Stdio proxy replicas claiming backend ordinals through real Leases on the apiserver: two
claimers get different ordinals, a third finds none free, an expired Lease is taken over, a
released one is taken at once, a renewal keeps one and a Lease taken by another is lost."""

from __future__ import annotations

import asyncio
import datetime

import pytest

from moorage_core.kube import LEASES, KubeClient
from moorage_proxyrunner.workload.ordinallease import OrdinalLease

pytestmark = pytest.mark.integration


class Clock:
    """A clock the test moves: Leases expire without waiting."""

    def __init__(self) -> None:
        self.now = datetime.datetime.now(datetime.UTC)

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += datetime.timedelta(seconds=seconds)


def claimer(
    kube: KubeClient, namespace: str, holder: str, *, clock: Clock, ordinals: int = 2
) -> OrdinalLease:
    return OrdinalLease(
        kube,
        namespace=namespace,
        statefulset="time",
        holder=holder,
        ordinals=ordinals,
        clock=clock,
        renew_every=0.05,
    )


async def holder_of(kube: KubeClient, namespace: str, ordinal: int) -> str | None:
    lease = await kube.get(LEASES, name=f"time-stdio-{ordinal}", namespace=namespace)
    holder = lease["spec"].get("holderIdentity")
    return None if holder is None else str(holder)


async def test_two_claimers_get_different_ordinals_and_a_third_waits(
    kube: KubeClient, namespace: str
) -> None:
    clock = Clock()
    a, b, c = (claimer(kube, namespace, f"time-proxy-{x}", clock=clock) for x in "abc")
    got = await asyncio.gather(a.try_claim(), b.try_claim())
    # Racing for ordinal 0, one may lose (409) and take the other ordinal on its next try.
    for lease in (a, b):
        if lease.ordinal is None:
            await lease.claim()
    assert {a.ordinal, b.ordinal} == {0, 1}, got
    assert await holder_of(kube, namespace, 0) in {"time-proxy-a", "time-proxy-b"}
    assert await c.try_claim() is None
    assert c.ordinal is None


async def test_an_expired_lease_is_taken_over_and_its_old_holder_loses_it(
    kube: KubeClient, namespace: str
) -> None:
    clock = Clock()
    a = claimer(kube, namespace, "time-proxy-a", clock=clock, ordinals=1)
    b = claimer(kube, namespace, "time-proxy-b", clock=clock, ordinals=1)
    assert await a.claim() == 0
    assert await b.try_claim() is None
    assert await a.renew() is True

    clock.advance(16)  # a stopped renewing: its 15 s Lease expired
    assert await b.try_claim() == 0
    assert await holder_of(kube, namespace, 0) == "time-proxy-b"
    assert await a.renew() is False
    assert a.ordinal is None
    assert await b.renew() is True


async def test_a_released_lease_is_taken_at_once_and_keep_returns_when_lost(
    kube: KubeClient, namespace: str
) -> None:
    clock = Clock()
    a = claimer(kube, namespace, "time-proxy-a", clock=clock, ordinals=1)
    b = claimer(kube, namespace, "time-proxy-b", clock=clock, ordinals=1)
    assert await a.claim() == 0
    await a.release()
    assert await holder_of(kube, namespace, 0) is None
    assert await b.try_claim() == 0

    # a takes it back after b's expiry; b's keep() sees the loss at its next renewal and returns.
    clock.advance(16)
    assert await a.try_claim() == 0
    await asyncio.wait_for(b.keep(), timeout=10)
    assert b.ordinal is None
    assert await holder_of(kube, namespace, 0) == "time-proxy-a"


async def test_a_resized_away_ordinal_is_released(kube: KubeClient, namespace: str) -> None:
    clock = Clock()
    a = claimer(kube, namespace, "time-proxy-a", clock=clock, ordinals=2)
    b = claimer(kube, namespace, "time-proxy-b", clock=clock, ordinals=2)
    assert await a.claim() == 0
    assert await b.claim() == 1
    b.resize(1)
    assert await b.renew() is False
    assert await holder_of(kube, namespace, 1) is None
