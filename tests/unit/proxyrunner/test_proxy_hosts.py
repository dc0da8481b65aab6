"""DNS-rebinding protection in a cluster: the `Host` and `Origin` values a proxy started from a
RunConfig accepts on its MCP endpoints, and that `/health` and `/metrics` answer any `Host`."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import example, given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from testkit.endpoints import Idle

from moorage_api.naming import proxy_service_hosts
from moorage_api.runconfig import RunConfig
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.front.app import is_host_allowed, is_origin_allowed, make_app
from moorage_proxyrunner.startup.cluster import (
    ClusterOptions,
    build_allowed_hosts,
    build_proxy_settings,
)

DERIVED = tuple(
    proxy_service_hosts("time", namespace="team-a", port=8080, cluster_domain="cluster.local")
)
IN_CLUSTER = ProxyRunnerSettings(
    host="0.0.0.0", allowed_hosts=(*DERIVED, "mcp.example.com", "tools.example.com:443")
)
OPTIONS = ClusterOptions(config=Path("runconfig.json"))


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("mcp-time-proxy", True),
        ("mcp-time-proxy:8080", True),
        ("mcp-time-proxy.team-a:8080", True),
        ("mcp-time-proxy.team-a.svc:8080", True),
        ("mcp-time-proxy.team-a.svc.cluster.local:8080", True),
        ("MCP-Time-Proxy.Team-A.svc:8080", True),
        ("mcp-time-proxy.team-a.svc.cluster.local.:8080", True),
        ("mcp.example.com", True),
        ("mcp.example.com:443", True),
        ("tools.example.com:443", True),
        ("10.96.12.7:8080", True),
        ("10.244.1.5", True),
        ("[fd00::7]:8080", True),
        ("localhost:38211", True),
        ("127.0.0.1:38211", True),
        ("evil.example", False),
        ("evil.example:8080", False),
        ("tools.example.com:8443", False),
        ("mcp-time-proxy.team-b:8080", False),
        ("mcp-time-proxy.team-a.svc.cluster.local.evil.example", False),
        ("10.0.0.1.nip.io", False),
        ("localhost.evil.example", False),
        ("", False),
        (None, False),
    ],
    ids=[
        "service",
        "service-port",
        "service-namespace",
        "service-svc",
        "service-fqdn",
        "mixed-case",
        "trailing-dot",
        "extra",
        "extra-any-port",
        "extra-with-port",
        "cluster-ip",
        "pod-ip-probe",
        "ipv6",
        "port-forward-localhost",
        "port-forward-ip",
        "rebinding-name",
        "rebinding-name-port",
        "extra-other-port",
        "other-namespace",
        "suffix-attack",
        "ip-shaped-name",
        "localhost-shaped-name",
        "empty",
        "missing",
    ],
)
def test_a_cluster_proxy_accepts_its_service_names_extras_and_addresses(
    host: str | None, allowed: bool
) -> None:
    assert is_host_allowed(host, IN_CLUSTER) is allowed


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        (None, "evil.example", True),
        ("https://mcp.example.com", "mcp.example.com", True),
        ("https://mcp.example.com", "mcp-time-proxy:8080", True),
        ("http://mcp-time-proxy.team-a.svc:8080", "mcp-time-proxy.team-a.svc:8080", True),
        ("https://tools.example.com:443", "tools.example.com:443", True),
        ("http://10.96.12.7:8080", "10.96.12.7:8080", True),
        ("http://evil.example:8080", "evil.example:8080", False),
        ("http://evil.example", "mcp-time-proxy:8080", False),
        ("http://10.0.0.9", "10.96.12.7:8080", False),
        ("http://localhost:3000", "mcp-time-proxy:8080", False),
        ("null", "mcp-time-proxy:8080", False),
        ("file://", "mcp-time-proxy:8080", False),
    ],
    ids=[
        "no-origin",
        "ingress-page",
        "ingress-page-via-service",
        "service-page",
        "extra-with-port",
        "cluster-ip-same-origin",
        "rebinding-same-origin",
        "foreign-page",
        "other-ip-page",
        "local-page-to-cluster",
        "null",
        "file",
    ],
)
def test_a_cluster_proxy_refuses_origins_whose_host_is_not_allowed(
    origin: str | None, host: str, allowed: bool
) -> None:
    assert is_origin_allowed(origin, host, IN_CLUSTER) is allowed


def test_a_runconfig_from_an_older_operator_still_gets_the_service_names() -> None:
    runconfig = RunConfig(name="time", namespace="team-a", image="x")
    assert build_allowed_hosts(runconfig, OPTIONS) == DERIVED


def test_the_proxy_settings_take_the_runconfigs_hosts_and_the_flags() -> None:
    runconfig = RunConfig(
        name="time", namespace="team-a", image="x", allowed_hosts=["mcp-time-proxy", "a.example"]
    )
    options = ClusterOptions(config=Path("r.json"), allowed_hosts=("b.example", "a.example"))
    settings = build_proxy_settings(runconfig, options)
    assert settings.allowed_hosts == ("mcp-time-proxy", "a.example", "b.example")


HOSTISH = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"[a-z0-9.\-\[\]:]{0,40}", fullmatch=True),
    st.sampled_from(DERIVED).map(lambda h: h + ".evil.example"),
    st.sampled_from(DERIVED).map(lambda h: h.replace(":", ".:") if ":" in h else h + "."),
)


def _names_an_address(host: str) -> bool:
    name = host.lower()
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name == "localhost"
    return True


@given(host=HOSTISH, origin=st.one_of(st.none(), HOSTISH, HOSTISH.map(lambda h: f"http://{h}")))
@example(host=":::0", origin=None)
def test_an_accepted_host_is_listed_or_names_an_address(host: str, origin: str | None) -> None:
    listed = set(IN_CLUSTER.allowed_hosts)
    name, colon, port = host.lower().rpartition(":")
    if not colon or host.endswith("]"):
        name, port = host.lower(), ""
    name = name.rstrip(".")
    if is_host_allowed(host, IN_CLUSTER):
        assert name in listed or f"{name}:{port}" in listed or _names_an_address(host)
    assert isinstance(is_origin_allowed(origin, host, IN_CLUSTER), bool)


async def test_health_and_metrics_answer_any_host_while_mcp_refuses_a_rebinding_one() -> None:
    app = make_app(IN_CLUSTER, endpoints=Idle(), registry=CollectorRegistry())
    async with TestClient(TestServer(app)) as client:
        headers: dict[str, Any] = {"Host": "evil.example:8080"}
        assert (await client.get("/health", headers=headers)).status == 200
        assert (await client.get("/metrics", headers=headers)).status == 200
        assert (await client.post("/mcp", headers=headers)).status == 421
        assert (await client.post("/mcp", headers={"Host": "mcp-time-proxy:8080"})).status == 200
