"""Informers against the real apiserver: order of events, cut connections, a silent watch, an
apiserver restart and a 410 Gone all end with a cache equal to the apiserver's state."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from relaying import TcpRelay
from testkit.waiting import eventually

from moorage_core.kube import CONFIGMAPS, JsonObject, KubeClient, ResourceKind
from moorage_dev.cluster import ControlPlane
from moorage_operator.runtime.cache import CacheEvent
from moorage_operator.runtime.informer import Informer, WatchPolicy

pytestmark = pytest.mark.integration

PODTEMPLATES = ResourceKind("", "v1", "podtemplates", "PodTemplate")
"""Served without the apiserver's watch cache (see the control plane's flags), so a watch from a
compacted resourceVersion gets a real 410 Gone."""

QUICK = WatchPolicy(backoff_initial=0.2, backoff_cap=2.0)


def configmap(name: str, value: str) -> JsonObject:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"v": value},
    }


def podtemplate(name: str, version: str) -> JsonObject:
    return {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": name},
        "template": {"spec": {"containers": [{"name": "c", "image": f"img:{version}"}]}},
    }


@contextlib.asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[list[CacheEvent]]:
    seen: list[CacheEvent] = []
    informer.add_handler(seen.append)
    task = asyncio.create_task(informer.run())
    try:
        await informer.wait_synced()
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def snapshot(kube: KubeClient, kind: ResourceKind, namespace: str) -> dict[str, str]:
    """name → resourceVersion of every object of `kind` in `namespace`, from the apiserver."""
    listed = await kube.list(kind, namespace=namespace)
    return {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in listed.items}


def cached(informer: Informer, namespace: str) -> dict[str, str]:
    return {
        o["metadata"]["name"]: o["metadata"]["resourceVersion"]
        for o in informer.cache.list(namespace=namespace)
    }


def last_event_per_name(events: list[CacheEvent]) -> dict[str, tuple[str, str]]:
    last: dict[str, tuple[str, str]] = {}
    for e in events:
        last[e.object["metadata"]["name"]] = (e.type, e.object["metadata"]["resourceVersion"])
    return last


async def test_an_informer_sees_create_update_delete_in_order(
    kube: KubeClient, namespace: str
) -> None:
    informer = Informer(kube, CONFIGMAPS, namespaces=(namespace,), policy=QUICK)
    async with running(informer) as seen:
        created = await kube.create(CONFIGMAPS, configmap("c", "1"), namespace=namespace)
        created["data"] = {"v": "2"}
        updated = await kube.replace(CONFIGMAPS, created, name="c", namespace=namespace)
        await kube.delete(CONFIGMAPS, name="c", namespace=namespace)

        def ours() -> list[tuple[str, str]]:
            return [
                (e.type, e.object["metadata"]["resourceVersion"])
                for e in seen
                if e.object["metadata"]["name"] == "c"
            ]

        await eventually(lambda: len(ours()) == 3, timeout=30)
    assert [t for t, _ in ours()] == ["ADDED", "MODIFIED", "DELETED"]
    assert ours()[0][1] == created["metadata"]["resourceVersion"]
    assert ours()[1][1] == updated["metadata"]["resourceVersion"]
    assert informer.cache.get("c", namespace=namespace) is None


@dataclass(frozen=True)
class Outage:
    """An informer that lost its connection while `new` was created, `kept` modified and
    `gone` deleted; the relay still holds new connections back."""

    informer: Informer
    seen: list[CacheEvent]
    kind: ResourceKind

    async def converged(self, kube: KubeClient, namespace: str) -> bool:
        truth = await snapshot(kube, self.kind, namespace)
        assert cached(self.informer, namespace) == truth
        return True

    def assert_missed_changes_reported(self) -> None:
        last = last_event_per_name(self.seen)
        assert (last["new"][0], last["kept"][0], last["gone"][0]) == (
            "ADDED",
            "MODIFIED",
            "DELETED",
        )


@contextlib.asynccontextmanager
async def outage(
    kube: KubeClient,
    namespace: str,
    relay: TcpRelay,
    admin_client_via: Any,
    kind: ResourceKind,
    make: Callable[[str, str], JsonObject],
) -> AsyncIterator[Outage]:
    for name in ("kept", "gone"):
        await kube.create(kind, make(name, "1"), namespace=namespace)
    informer = Informer(await admin_client_via(relay), kind, namespaces=(namespace,), policy=QUICK)
    async with running(informer) as seen:
        relay.hold()
        relay.drop()
        await kube.create(kind, make("new", "1"), namespace=namespace)
        kept = await kube.get(kind, name="kept", namespace=namespace)
        kept.update(make("kept", "2"), metadata=kept["metadata"])
        await kube.replace(kind, kept, name="kept", namespace=namespace)
        await kube.delete(kind, name="gone", namespace=namespace)
        yield Outage(informer, seen, kind)


async def test_the_cache_converges_after_the_watch_connection_is_cut(
    kube: KubeClient, namespace: str, relay: TcpRelay, admin_client_via: Any
) -> None:
    async with outage(kube, namespace, relay, admin_client_via, CONFIGMAPS, configmap) as out:
        relay.release()
        await eventually(lambda: out.converged(kube, namespace), timeout=60)
    out.assert_missed_changes_reported()


async def test_a_silent_watch_is_restarted_by_the_watchdog(
    kube: KubeClient, namespace: str, relay: TcpRelay, admin_client_via: Any
) -> None:
    via_relay = await admin_client_via(relay)
    policy = WatchPolicy(inactivity_timeout=2.0, backoff_initial=0.2, backoff_cap=2.0)
    informer = Informer(via_relay, CONFIGMAPS, namespaces=(namespace,), policy=policy)
    async with running(informer) as seen:
        relay.freeze()  # the watch's connection stays open but nothing gets through any more
        await kube.create(CONFIGMAPS, configmap("after-freeze", "1"), namespace=namespace)
        await eventually(
            lambda: any(e.object["metadata"]["name"] == "after-freeze" for e in seen), timeout=60
        )
    assert informer.relists == 0, "the watch was resumed, not relisted"


async def test_the_cache_converges_across_an_apiserver_restart(
    kube: KubeClient,
    namespace: str,
    relay: TcpRelay,
    admin_client_via: Any,
    control_plane: ControlPlane,
) -> None:
    async with outage(kube, namespace, relay, admin_client_via, CONFIGMAPS, configmap) as out:
        await asyncio.to_thread(control_plane.restart_apiserver)
        relay.release()
        await kube.create(CONFIGMAPS, configmap("after-restart", "1"), namespace=namespace)
        await eventually(lambda: out.converged(kube, namespace), timeout=90)
    out.assert_missed_changes_reported()
    assert last_event_per_name(out.seen)["after-restart"][0] == "ADDED"


async def test_a_410_gone_makes_the_informer_relist_and_report_what_it_missed(
    kube: KubeClient,
    namespace: str,
    relay: TcpRelay,
    admin_client_via: Any,
    control_plane: ControlPlane,
) -> None:
    async with outage(kube, namespace, relay, admin_client_via, PODTEMPLATES, podtemplate) as out:
        await asyncio.to_thread(control_plane.compact_etcd)
        relay.release()
        await eventually(lambda: out.converged(kube, namespace), timeout=60)
    assert out.informer.relists >= 1, "resuming from a compacted version must end in a relist"
    out.assert_missed_changes_reported()
