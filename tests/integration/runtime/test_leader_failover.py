"""Two `moorage-operator` processes share one Lease: one leads; kill -9 hands over within the
lease's expiry (≤ 20 s), SIGTERM within one retry period (≤ 3 s, the Lease is released); a
leader whose Lease is taken exits non-zero."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from spawning import Processes
from testkit.waiting import eventually

from moorage_core.errors import NotFound
from moorage_core.kube import LEASES, KubeClient
from moorage_dev.cluster import ControlPlane, free_port

pytestmark = pytest.mark.integration

OPERATOR = str(Path(sys.executable).with_name("moorage-operator"))
LEASE = "moorage-operator"


class Replica:
    """One operator process and the port of its metrics server."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.name = name
        self.proc = proc
        self.port = port
        self.log = log

    async def leader_gauge(self, session: aiohttp.ClientSession) -> float | None:
        """The value of moorage_leader_election_status, or None when the server is not up."""
        try:
            async with session.get(f"https://127.0.0.1:{self.port}/metrics") as resp:
                text = await resp.text()
        except aiohttp.ClientError:
            return None
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "moorage_leader_election_status" and sample.labels == {
                    "name": LEASE
                }:
                    return sample.value
        return None


@dataclass(frozen=True)
class Setup:
    """Everything a failover test needs: the admin client, the namespace holding the Lease, an
    HTTPS session for the replicas' metrics, and a way to start a replica."""

    kube: KubeClient
    namespace: str
    session: aiohttp.ClientSession
    processes: Processes
    control_plane: ControlPlane
    tmp_path: Path

    def start(self, name: str) -> Replica:
        port = free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(self.control_plane.kubeconfig),
            "POD_NAMESPACE": self.namespace,
            "POD_NAME": name,
            "LEADER_ELECTION": "true",
            "METRICS_BIND": f"127.0.0.1:{port}",
            "LOG_FORMAT": "json",
            "WATCH_NAMESPACES": self.namespace,
        }
        log = self.tmp_path / f"{name}.log"
        return Replica(name, self.processes.start([OPERATOR], env=env, log=log), port, log)

    async def holder(self) -> str:
        try:
            lease = await self.kube.get(LEASES, name=LEASE, namespace=self.namespace)
        except NotFound:
            return ""
        return str((lease.get("spec") or {}).get("holderIdentity") or "")

    async def holds(self, replica: Replica) -> bool:
        assert await self.holder() == replica.name
        return True

    async def sole_leader(self, replicas: list[Replica]) -> Replica:
        """The replica that holds the Lease and says so, every other one saying it does not."""
        name = await self.holder()
        gauges = {r.name: await r.leader_gauge(self.session) for r in replicas}
        assert name in gauges, f"Lease held by {name!r}"
        assert gauges == {r.name: (1.0 if r.name == name else 0.0) for r in replicas}, gauges
        return next(r for r in replicas if r.name == name)

    async def two_replicas(self) -> tuple[Replica, Replica]:
        """Start two replicas; (leader, standby) once exactly one leads."""
        replicas = [self.start(name) for name in ("op-a", "op-b")]
        leader = await eventually(lambda: self.sole_leader(replicas), timeout=60)
        return leader, next(r for r in replicas if r is not leader)


@pytest.fixture
async def setup(
    processes: Processes,
    control_plane: ControlPlane,
    crds: list[str],
    kube: KubeClient,
    namespace: str,
    tmp_path: Path,
) -> AsyncIterator[Setup]:
    """Replicas run the whole operator, so our CRDs must be served for their caches to sync."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as session:
        yield Setup(kube, namespace, session, processes, control_plane, tmp_path)


async def test_kill_9_of_the_leader_hands_over_within_the_lease_expiry(setup: Setup) -> None:
    leader, standby = await setup.two_replicas()
    leader.proc.send_signal(signal.SIGKILL)
    await eventually(
        lambda: setup.holds(standby), timeout=20, interval=0.1, message="failover after kill -9"
    )
    await eventually(lambda: setup.sole_leader([standby]), timeout=10)


async def test_sigterm_of_the_leader_releases_the_lease_and_hands_over_at_once(
    setup: Setup,
) -> None:
    leader, standby = await setup.two_replicas()
    leader.proc.send_signal(signal.SIGTERM)
    await eventually(
        lambda: setup.holds(standby), timeout=3, interval=0.05, message="failover after SIGTERM"
    )
    assert leader.proc.wait(timeout=30) == 0, leader.log.read_text()[-3000:]
    assert '"event": "lease_released"' in leader.log.read_text()


async def test_a_leader_whose_lease_is_taken_exits_non_zero(setup: Setup) -> None:
    replica = setup.start("op-only")
    await eventually(lambda: setup.sole_leader([replica]), timeout=60)
    lease = await setup.kube.get(LEASES, name=LEASE, namespace=setup.namespace)
    lease["spec"]["holderIdentity"] = "someone-else"
    await setup.kube.replace(LEASES, lease, name=LEASE, namespace=setup.namespace)
    await eventually(lambda: replica.proc.poll() is not None, timeout=30)
    assert replica.proc.returncode == 1
    assert '"event": "leadership_lost"' in replica.log.read_text()
