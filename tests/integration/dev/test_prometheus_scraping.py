"""A real Prometheus scraping Moorage's metrics servers with the jobs our monitors generate.

Scraping: the operator's and the webhook's ServiceMonitor jobs, in their static variant (the
apiserver refuses loopback endpoint addresses), point at `moorage_core.serving` metrics servers
started here with the operator's and the webhook's own collectors: the operator's behind a
self-signed certificate, the webhook's behind a certificate of a CA that Prometheus is given as
the webhook monitor's `ca` (and one of another CA, which it must refuse).

Discovery: the same monitors' Kubernetes jobs against the test session's apiserver find the pods
behind the operator's Service and the proxy runner pods, with the target labels the alerts use
(kwok's pod addresses reach nothing, so they are discovered but not scraped).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from prometheus_client import CollectorRegistry
from testkit.kustomize import DEPLOY
from testkit.waiting import eventually

from moorage_api.constants import (
    COMPONENT_PROXY_RUNNER,
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    LABEL_MCPSERVER,
    MANAGED_BY,
)
from moorage_core.kube import PODS, SERVICES, KubeClient
from moorage_core.serving import HealthChecks, HTTPSServer, make_health_app
from moorage_core.tls import CertificatePair, ReloadingTLS, build_ca, build_leaf, write_pair
from moorage_dev.cluster import ControlPlane
from moorage_dev.prometheus import (
    WEBHOOK_CA,
    Prometheus,
    load_monitors,
    moorage_prometheus_config,
)
from moorage_dev.scrapeconfigs import (
    ScrapeSettings,
    StaticTarget,
    build_prometheus_config,
    build_scrape_configs,
    endpoint_discovery_labels,
)
from moorage_operator.metrics import OperatorMetrics
from moorage_webhook.metrics import WebhookMetrics

pytestmark = pytest.mark.integration

WEBHOOK_HOST = "moorage-webhook.moorage-system.svc"


@dataclass(frozen=True, slots=True)
class MetricsServer:
    port: int
    registry: CollectorRegistry


def _service(path: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "base" / path).read_text())
    return doc


def _monitor(name: str) -> dict[str, Any]:
    (monitor,) = [m for m in load_monitors() if m["metadata"]["name"] == name]
    return monitor


Serve = Callable[[ReloadingTLS], Awaitable[MetricsServer]]


@pytest_asyncio.fixture
async def serve() -> AsyncIterator[Serve]:
    """Starts `moorage_core.serving` metrics servers on loopback; stops them afterwards."""
    servers: list[HTTPSServer] = []

    async def start(tls: ReloadingTLS) -> MetricsServer:
        registry = CollectorRegistry()
        server = HTTPSServer(
            make_health_app(registry, HealthChecks()), host="127.0.0.1", port=0, tls=tls
        )
        await server.start()
        servers.append(server)
        return MetricsServer(server.port, registry)

    yield start
    for server in servers:
        await server.stop()


def _tls_from(directory: Path, pair: CertificatePair) -> ReloadingTLS:
    cert, key = write_pair(pair, directory)
    return ReloadingTLS(cert, key)


async def test_prometheus_scrapes_the_operator_and_the_webhook_as_their_monitors_say(
    serve: Serve, tmp_path: Path
) -> None:
    operator = await serve(
        ReloadingTLS.from_dir(None, hosts=["127.0.0.1"], common_name="moorage-operator")
    )
    OperatorMetrics(operator.registry).leader("moorage-operator").set(1)

    webhook_ca = build_ca(common_name="moorage-webhook-ca")
    (tmp_path / "webhook").mkdir()
    webhook = await serve(
        _tls_from(
            tmp_path / "webhook",
            build_leaf(webhook_ca, common_name=WEBHOOK_HOST, hosts=[WEBHOOK_HOST]),
        )
    )
    WebhookMetrics.create(webhook.registry).requests.labels(
        kind="MCPServer", operation="CREATE", allowed="true", code="200"
    ).inc(3)
    (tmp_path / "impostor").mkdir()
    impostor = await serve(
        _tls_from(
            tmp_path / "impostor",
            build_leaf(
                build_ca(common_name="other-ca"), common_name=WEBHOOK_HOST, hosts=[WEBHOOK_HOST]
            ),
        )
    )
    ca_file = tmp_path / "webhook-ca.crt"
    ca_file.write_bytes(webhook_ca.cert_pem)

    def target(service: dict[str, Any], port: int, pod: str) -> StaticTarget:
        labels = endpoint_discovery_labels(service, port_name="metrics", pod_name=pod)
        return StaticTarget(f"127.0.0.1:{port}", labels)

    webhook_service = _service("webhook/service.yaml")
    settings = ScrapeSettings(
        files={WEBHOOK_CA: ca_file},
        interval="1s",
        static_targets={
            "moorage-system/moorage-operator": [
                target(_service("operator/service.yaml"), operator.port, "moorage-operator-0")
            ],
            "moorage-system/moorage-webhook": [
                target(webhook_service, webhook.port, "moorage-webhook-0"),
                target(webhook_service, impostor.port, "moorage-webhook-impostor"),
            ],
        },
    )
    jobs = build_scrape_configs(
        [_monitor("moorage-operator"), _monitor("moorage-webhook")], settings=settings
    )
    prometheus = Prometheus(build_prometheus_config(jobs), tmp_path / "prometheus", report=print)
    await asyncio.to_thread(prometheus.start)
    try:

        async def scraped() -> dict[str, dict[str, Any]]:
            targets = await asyncio.to_thread(prometheus.targets)
            by_pod = {t["labels"]["pod"]: t for t in targets}
            assert {pod: t["health"] for pod, t in by_pod.items()} == {
                "moorage-operator-0": "up",
                "moorage-webhook-0": "up",
                "moorage-webhook-impostor": "down",
            }
            return by_pod

        by_pod = await eventually(scraped, timeout=60, interval=0.5, message="scrape results")
        assert by_pod["moorage-operator-0"]["labels"] == {
            "job": "moorage-operator-metrics",
            "namespace": "moorage-system",
            "service": "moorage-operator-metrics",
            "pod": "moorage-operator-0",
            "endpoint": "metrics",
            "instance": f"127.0.0.1:{operator.port}",
        }
        assert by_pod["moorage-webhook-0"]["labels"]["job"] == "moorage-webhook"
        assert "certificate" in by_pod["moorage-webhook-impostor"]["lastError"]

        async def queried(expr: str) -> list[dict[str, Any]]:
            result = await asyncio.to_thread(prometheus.query, expr)
            assert result, f"{expr} has no result yet"
            return result

        (leader,) = await eventually(
            lambda: queried('moorage_leader_election_status{job="moorage-operator-metrics"}'),
            timeout=30,
            interval=0.5,
        )
        assert leader["value"][1] == "1"
        assert leader["metric"]["name"] == "moorage-operator"
        (requests,) = await eventually(
            lambda: queried('moorage_webhook_requests_total{job="moorage-webhook"}'),
            timeout=30,
            interval=0.5,
        )
        assert requests["value"][1] == "3"
        assert requests["metric"]["pod"] == "moorage-webhook-0"
        # The webhook alert's own expression sees the scraped webhook as up.
        assert (
            await asyncio.to_thread(prometheus.query, 'absent(up{job="moorage-webhook"} == 1)')
            == []
        )
    finally:
        await asyncio.to_thread(prometheus.stop)


def _in_namespace(monitor: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The monitor as if installed in `namespace`: moorage-system is shared with other tests."""
    moved = copy.deepcopy(monitor)
    moved["metadata"]["namespace"] = namespace
    return moved


def _pod(name: str, namespace: str, labels: dict[str, str], port: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "nodeSelector": {"type": "kwok"},
            "containers": [{"name": "main", "image": "moorage/test:1", "ports": [port]}],
        },
    }


# May build Prometheus with Kubernetes discovery from Go modules (about 7 minutes cold) unless
# `moorage-dev build --real-node` already has.
@pytest.mark.timeout(1200)
async def test_kubernetes_discovery_finds_the_pods_our_monitors_select(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    service = _service("operator/service.yaml")
    service["metadata"]["namespace"] = namespace
    await kube.create(SERVICES, service, namespace=namespace)
    operator_labels = {
        "app.kubernetes.io/name": "moorage",
        "app.kubernetes.io/component": "operator",
    }
    metrics_port = {"name": "metrics", "containerPort": 8443}
    proxy_labels = {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_COMPONENT: COMPONENT_PROXY_RUNNER,
        LABEL_MCPSERVER: "time",
    }
    for pod in (
        _pod("moorage-operator-0", namespace, operator_labels, metrics_port),
        _pod("time-proxy-0", namespace, proxy_labels, {"name": "http", "containerPort": 8080}),
        # Neither monitor selects this one.
        _pod("bystander-0", namespace, {"app": "bystander"}, metrics_port),
    ):
        await kube.create(PODS, pod, namespace=namespace)

    ca_file = tmp_path / "webhook-ca.crt"
    ca_file.write_bytes(build_ca().cert_pem)
    config = moorage_prometheus_config(
        kubeconfig=control_plane.kubeconfig,
        webhook_ca_file=ca_file,
        interval="1s",
        monitors=[
            _in_namespace(_monitor("moorage-operator"), namespace),
            _in_namespace(_monitor("moorage-proxy-runners"), namespace),
        ],
    )
    prometheus = Prometheus(config, tmp_path / "prometheus", report=print)
    await asyncio.to_thread(prometheus.start)
    try:

        async def discovered() -> dict[str, dict[str, str]]:
            targets = await asyncio.to_thread(prometheus.targets)
            # The proxy runners' monitor looks in every namespace; other tests' pods are not ours.
            mine = [t["labels"] for t in targets if t["labels"].get("namespace") == namespace]
            by_pod = {labels["pod"]: labels for labels in mine}
            assert set(by_pod) == {"moorage-operator-0", "time-proxy-0"}, mine
            return by_pod

        by_pod = await eventually(discovered, timeout=60, interval=0.5, message="discovery")
        ips: dict[str, str] = {}
        for name in by_pod:
            got = await kube.get(PODS, namespace=namespace, name=name)
            ips[name] = got["status"]["podIP"]
        assert by_pod["moorage-operator-0"] == {
            "job": "moorage-operator-metrics",
            "namespace": namespace,
            "service": "moorage-operator-metrics",
            "pod": "moorage-operator-0",
            "container": "main",
            "endpoint": "metrics",
            "instance": f"{ips['moorage-operator-0']}:8443",
        }
        assert by_pod["time-proxy-0"] == {
            "job": f"{namespace}/moorage-proxy-runners",
            "namespace": namespace,
            "pod": "time-proxy-0",
            "container": "main",
            "moorage_dev_mcpserver": "time",
            "instance": f"{ips['time-proxy-0']}:8080",
        }
    finally:
        await asyncio.to_thread(prometheus.stop)
