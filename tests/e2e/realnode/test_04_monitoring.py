"""Step 5: Prometheus scrapes the operator and the webhook as our ServiceMonitors declare.

Prometheus (upstream, built from Go modules: Debian's package lacks Kubernetes discovery), configured from deploy/components/monitoring's ServiceMonitors (HTTPS, the
webhook's certificate verified against its cert-manager CA), discovers the pods through the
apiserver and scrapes their pod IPs on the real node.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from realkit import SYSTEM, create_namespace, get, wait
from testkit.kustomize import Install

from moorage_dev.cluster import ControlPlane
from moorage_dev.prometheus import Prometheus, moorage_prometheus_config

NAMESPACE = "monitored"
TIME_IMAGE = "ghcr.io/moorage-dev/mcp-server-time:2025.9.25"
RECONCILES = 'sum(moorage_controller_reconcile_total{controller="mcpserver"})'


@pytest.fixture(scope="module")
def prometheus(
    plane: ControlPlane, installed: Install, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    directory: Path = tmp_path_factory.mktemp("prometheus")
    secret = get(plane, "secret", "-n", SYSTEM, "moorage-webhook-tls")
    ca = directory / "webhook-ca.crt"
    ca.write_bytes(base64.b64decode(secret["data"]["ca.crt"]))
    config = moorage_prometheus_config(
        kubeconfig=plane.kubeconfig, webhook_ca_file=ca, interval="2s"
    )
    with Prometheus(config, directory / "server", report=print) as server:
        yield server


def _up(prometheus: Any, component: str) -> list[dict[str, Any]]:
    return [
        t
        for t in prometheus.targets()
        if t["labels"].get("pod", "").startswith(f"moorage-{component}-") and t["health"] == "up"
    ]


@pytest.mark.parametrize("component", ["operator", "webhook"])
def test_prometheus_scrapes_each_component_on_its_pod_ips(
    plane: ControlPlane, prometheus: Any, component: str
) -> None:
    assert plane.real_node is not None
    up = wait(f"{component} targets up", lambda: _up(prometheus, component), timeout=120)
    pod_range = ipaddress.ip_network(plane.real_node.pod_cidr)
    for target in up:
        url = urlsplit(target["scrapeUrl"])
        assert url.scheme == "https"
        assert url.path == "/metrics"
        assert ipaddress.ip_address(url.hostname or "") in pod_range


def _reconciles(prometheus: Any) -> float:
    result = prometheus.query(RECONCILES)
    return float(result[0]["value"][1]) if result else 0.0


def test_reconcile_total_grows_after_an_apply(plane: ControlPlane, prometheus: Any) -> None:
    wait("operator targets up", lambda: _up(prometheus, "operator"), timeout=120)
    before = wait("a first reconcile count", lambda: prometheus.query(RECONCILES), timeout=60)
    start = float(before[0]["value"][1])
    create_namespace(plane, NAMESPACE)
    server = {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPServer",
        "metadata": {"name": "watched", "namespace": NAMESPACE},
        "spec": {"image": TIME_IMAGE, "transport": "stdio", "port": 8080},
    }
    plane.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(server))
    grown = wait(
        "moorage_controller_reconcile_total to grow",
        lambda: (value := _reconciles(prometheus)) > start and value,
        timeout=120,
    )
    assert grown > start
