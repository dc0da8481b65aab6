"""The manager against the real apiserver: probes, metrics, and controllers only on the leader."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from relaying import TcpRelay
from testkit.waiting import eventually

from moorage_core.kube import CONFIGMAPS, LEASES, KubeClient
from moorage_core.tls import CERT_FILE, KEY_FILE, ReloadingTLS, build_self_signed, write_pair
from moorage_dev.cluster import ControlPlane
from moorage_operator.metrics import OperatorMetrics
from moorage_operator.runtime import (
    LeaderElectionConfig,
    LeadershipLost,
    Manager,
    ManagerOptions,
    Request,
    Result,
)

pytestmark = pytest.mark.integration

METRIC_NAMES = [
    "moorage_controller_reconcile_total",
    "moorage_controller_reconcile_errors_total",
    "moorage_controller_reconcile_time_seconds_bucket",
    "moorage_controller_active_workers",
    "moorage_controller_max_concurrent_reconciles",
    "moorage_workqueue_depth",
    "moorage_workqueue_adds_total",
    "moorage_workqueue_queue_duration_seconds_bucket",
    "moorage_workqueue_work_duration_seconds_bucket",
    "moorage_workqueue_retries_total",
    "moorage_workqueue_unfinished_work_seconds",
    "moorage_workqueue_longest_running_processor_seconds",
    "moorage_leader_election_status",
    "moorage_rest_client_requests_total",
    "moorage_rest_client_request_duration_seconds_bucket",
]


class CountingReconciler:
    def __init__(self) -> None:
        self.calls: Counter[Request] = Counter()

    async def reconcile(self, request: Request) -> Result:
        self.calls[request] += 1
        return Result()


def tls_in(directory: Path) -> ReloadingTLS:
    write_pair(build_self_signed(hosts=["127.0.0.1"], common_name="moorage-test"), directory)
    return ReloadingTLS(directory / CERT_FILE, directory / KEY_FILE)


def options(namespace: str, **overrides: Any) -> ManagerOptions:
    return ManagerOptions(
        namespaces=(namespace,), metrics_host="127.0.0.1", metrics_port=0, **overrides
    )


@contextlib.asynccontextmanager
async def running(manager: Manager) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(manager.run())
    try:
        await eventually(lambda: task.done() or manager.metrics_port != 0, timeout=30)
        yield task
    finally:
        manager.stop()
        with contextlib.suppress(Exception):
            await task


@contextlib.asynccontextmanager
async def https() -> AsyncIterator[aiohttp.ClientSession]:
    # The server's certificate is self-signed; what matters here is that it speaks TLS.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as session:
        yield session


async def probe(session: aiohttp.ClientSession, port: int, path: str) -> tuple[int, str]:
    async with session.get(f"https://127.0.0.1:{port}{path}") as resp:
        return resp.status, await resp.text()


async def test_readyz_is_503_until_every_cache_has_synced(
    relay: TcpRelay, admin_client_via: Any, namespace: str, tmp_path: Path
) -> None:
    relay.hold()  # the informer's first list cannot reach the apiserver yet
    kube = await admin_client_via(relay)
    manager = Manager(kube, options=options(namespace), tls=tls_in(tmp_path))
    manager.informer(CONFIGMAPS)
    async with running(manager), https() as session:
        port = manager.metrics_port
        assert (await probe(session, port, "/healthz"))[0] == 200
        status, text = await probe(session, port, "/readyz")
        assert status == 503
        assert "configmaps" in text
        relay.release()
        await eventually(lambda: _ready(session, port), timeout=30)


async def _ready(session: aiohttp.ClientSession, port: int) -> bool:
    status, _ = await probe(session, port, "/readyz")
    return status == 200


async def test_metrics_expose_controller_queue_leader_and_client_series(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    metrics = OperatorMetrics(registry)
    kube = await KubeClient.connect(
        kubeconfig=str(control_plane.kubeconfig), observer=metrics.observe_request
    )
    election = LeaderElectionConfig(namespace=namespace, identity="metrics-test")
    manager = Manager(
        kube,
        options=options(namespace, leader_election=election),
        metrics=metrics,
        tls=tls_in(tmp_path),
    )
    reconciler = CountingReconciler()
    manager.add_controller("configmap", reconciler, for_kind=CONFIGMAPS)
    await kube.create(
        CONFIGMAPS,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"}},
        namespace=namespace,
    )
    try:
        async with running(manager), https() as session:
            await eventually(lambda: reconciler.calls[Request(namespace, "m")] >= 1, timeout=30)
            status, text = await probe(session, manager.metrics_port, "/metrics")
    finally:
        await kube.close()
    assert status == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    names = {name for name, _ in samples}
    missing = [n for n in METRIC_NAMES if n not in names]
    assert not missing, f"missing from /metrics: {missing}"
    assert samples[("moorage_leader_election_status", (("name", "moorage-operator"),))] == 1.0
    success = (("controller", "configmap"), ("result", "success"))
    assert samples[("moorage_controller_reconcile_total", success)] >= 1
    assert samples[("moorage_workqueue_adds_total", (("name", "configmap"),))] >= 1
    assert any(
        n == "moorage_rest_client_requests_total" and ("verb", "list") in labels
        for n, labels in samples
    )


async def test_only_the_leader_reconciles_and_a_standby_takes_over_when_it_stops(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    admin = await KubeClient.connect(kubeconfig=str(control_plane.kubeconfig))
    await admin.create(
        CONFIGMAPS,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
        namespace=namespace,
    )
    managers: list[Manager] = []
    reconcilers: list[CountingReconciler] = []
    for i, identity in enumerate(("first", "second")):
        election = LeaderElectionConfig(namespace=namespace, identity=identity)
        manager = Manager(
            admin,
            options=options(namespace, leader_election=election),
            tls=tls_in(tmp_path / str(i)),
        )
        reconciler = CountingReconciler()
        manager.add_controller("configmap", reconciler, for_kind=CONFIGMAPS)
        managers.append(manager)
        reconcilers.append(reconciler)
    first, second = managers
    try:
        async with running(first) as first_task:
            await eventually(lambda: reconcilers[0].calls[Request(namespace, "x")] >= 1, timeout=30)
            async with running(second), https() as session:
                # The standby is ready (its caches are warm) but does not reconcile.
                await eventually(lambda: _ready(session, second.metrics_port), timeout=30)
                assert not second.is_leader
                assert reconcilers[1].calls == Counter()
                first.stop()
                await first_task
                # The Lease was released, so the standby takes over without waiting for expiry.
                await eventually(lambda: second.is_leader, timeout=5)
                await eventually(
                    lambda: reconcilers[1].calls[Request(namespace, "x")] >= 1, timeout=30
                )
    finally:
        await admin.close()


async def test_a_leader_whose_lease_is_taken_stops_with_leadership_lost(
    kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    election = LeaderElectionConfig(namespace=namespace, identity="victim")
    manager = Manager(
        kube, options=options(namespace, leader_election=election), tls=tls_in(tmp_path)
    )
    task = asyncio.create_task(manager.run())
    try:
        await eventually(lambda: manager.is_leader, timeout=30)
        lease = await kube.get(LEASES, name="moorage-operator", namespace=namespace)
        lease["spec"]["holderIdentity"] = "usurper"
        await kube.replace(LEASES, lease, name="moorage-operator", namespace=namespace)
        with pytest.raises(LeadershipLost, match="usurper"):
            await asyncio.wait_for(task, timeout=30)
    finally:
        manager.stop()
        with contextlib.suppress(LeadershipLost):
            await task
    assert not manager.is_leader
