"""Cluster DNS against the real control plane: CoreDNS (our build, our Corefile) on loopback.

CoreDNS reads Services, EndpointSlices and pods from the test session's apiserver, exactly as on
the real node, only bound to 127.0.0.1 on a free high port instead of the node's bridge port 53.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest
from testkit.waiting import eventually, eventually_sync

from moorage_core.kube import PODS, SERVICES, KubeClient
from moorage_dev.cluster import POD_CIDR, SERVICE_CIDR, ControlPlane, free_port
from moorage_dev.dns import dns_ready, ensure_coredns, write_corefile

# The first test may build CoreDNS from Go modules (about 4 minutes cold) unless
# `moorage-dev build --real-node` already has.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@dataclass(frozen=True, slots=True)
class Server:
    ip: str
    port: int
    health_port: int
    ready_port: int


@pytest.fixture(scope="module")
def coredns(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    state = tmp_path_factory.mktemp("coredns")
    server = Server("127.0.0.1", free_port(), health_port=free_port(), ready_port=free_port())
    conf = write_corefile(
        state,
        bind_ip=server.ip,
        port=server.port,
        kubeconfig=control_plane.kubeconfig,
        reverse_cidrs=(SERVICE_CIDR, POD_CIDR),
        health_port=server.health_port,
        ready_port=server.ready_port,
    )
    log = (state / "coredns.log").open("w")
    proc = subprocess.Popen(
        [str(ensure_coredns(print)), "-conf", str(conf)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        eventually_sync(
            lambda: proc.poll() is None and dns_ready(server.ip, server.port),
            timeout=60,
            message=f"CoreDNS answers (log: {Path(log.name).read_text()[-2000:]!r})",
        )
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


async def _ask(server: Server, name: str, rdtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return await dns.asyncquery.udp(query, server.ip, port=server.port, timeout=3)


def _addresses(reply: dns.message.Message) -> set[str]:
    return {
        item.to_text()
        for rrset in reply.answer
        if rrset.rdtype == dns.rdatatype.A
        for item in rrset
    }


async def test_a_service_name_resolves_to_its_cluster_ip(
    coredns: Server, kube: KubeClient, namespace: str
) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "api", "namespace": namespace},
        "spec": {"selector": {"app": "api"}, "ports": [{"name": "http", "port": 80}]},
    }
    created = await kube.create(SERVICES, service, namespace=namespace)
    cluster_ip = created["spec"]["clusterIP"]

    async def resolves() -> bool:
        reply = await _ask(coredns, f"api.{namespace}.svc.cluster.local")
        assert reply.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(reply.rcode())
        assert _addresses(reply) == {cluster_ip}
        return True

    await eventually(resolves, timeout=30, message="the Service's A record")

    reverse = await _ask(coredns, str(dns.reversename.from_address(cluster_ip)), "PTR")
    assert [item.to_text() for rrset in reverse.answer for item in rrset] == [
        f"api.{namespace}.svc.cluster.local."
    ]


async def test_a_headless_services_pod_resolves_by_hostname_and_subdomain(
    coredns: Server, kube: KubeClient, namespace: str
) -> None:
    headless = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "clusterIP": "None",
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 8080}],
        },
    }
    await kube.create(SERVICES, headless, namespace=namespace)
    # What a StatefulSet's pod looks like to DNS: hostname = pod name, subdomain = service name.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": namespace, "labels": {"app": "web"}},
        "spec": {
            "hostname": "web-0",
            "subdomain": "web",
            "nodeSelector": {"type": "kwok"},
            "containers": [{"name": "web", "image": "web:1", "ports": [{"containerPort": 8080}]}],
        },
    }
    await kube.create(PODS, pod, namespace=namespace)

    async def pod_ip() -> str:
        got = await kube.get(PODS, namespace=namespace, name="web-0")
        return str(got.get("status", {}).get("podIP") or "")

    ip = await eventually(pod_ip, timeout=60, message="kwok gives the pod an address")

    async def resolves() -> bool:
        by_name = await _ask(coredns, f"web-0.web.{namespace}.svc.cluster.local")
        assert _addresses(by_name) == {ip}, by_name.to_text()
        service = await _ask(coredns, f"web.{namespace}.svc.cluster.local")
        assert _addresses(service) == {ip}, service.to_text()
        return True

    await eventually(resolves, timeout=30, message="the headless Service's records")


@pytest.mark.parametrize(
    "name",
    ["nothing-here.{namespace}.svc.cluster.local", "example.com", "localhost"],
    ids=["unknown-service", "outside-name", "bare-name"],
)
async def test_an_unknown_name_is_nxdomain_at_once(
    coredns: Server, namespace: str, name: str
) -> None:
    started = time.monotonic()
    reply = await _ask(coredns, name.format(namespace=namespace))
    assert dns.rcode.to_text(reply.rcode()) == "NXDOMAIN"
    assert time.monotonic() - started < 1.0


async def test_an_unknown_address_in_the_pod_range_is_nxdomain(coredns: Server) -> None:
    reply = await _ask(coredns, "254.255.244.10.in-addr.arpa", "PTR")
    assert dns.rcode.to_text(reply.rcode()) == "NXDOMAIN"


@pytest.mark.parametrize("path", ["health", "ready"])
def test_health_and_ready_answer_on_loopback(coredns: Server, path: str) -> None:
    port = coredns.health_port if path == "health" else coredns.ready_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=5) as response:
        assert (response.status, response.read().decode()) == (200, "OK")
