"""The `Host` values an MCPServer's proxy accepts (DNS-rebinding protection): its Service's names
under the cluster domain, each bare and with the port, then `spec.allowedHosts`."""

from __future__ import annotations

import json
from dataclasses import replace
from urllib.parse import urlsplit

from planning_fixtures import SETTINGS, by_kind, server

from moorage_api.runconfig import restart_checksum
from moorage_operator.planning import (
    Observed,
    References,
    compute_status,
    desired_children,
    plan_mcpserver,
)
from moorage_operator.planning.mcpservers.runconfigs import desired_allowed_hosts

SERVICE_NAMES = [
    "mcp-time-proxy",
    "mcp-time-proxy:8080",
    "mcp-time-proxy.team-a",
    "mcp-time-proxy.team-a:8080",
    "mcp-time-proxy.team-a.svc",
    "mcp-time-proxy.team-a.svc:8080",
    "mcp-time-proxy.team-a.svc.cluster.local",
    "mcp-time-proxy.team-a.svc.cluster.local:8080",
]


def test_the_service_names_are_allowed_bare_and_with_the_port() -> None:
    assert desired_allowed_hosts(server(), cluster_domain="cluster.local") == SERVICE_NAMES


def test_the_cluster_domain_and_port_come_from_the_setting_and_the_spec() -> None:
    hosts = desired_allowed_hosts(server(port=9000), cluster_domain="corp.internal")
    assert hosts[-2:] == [
        "mcp-time-proxy.team-a.svc.corp.internal",
        "mcp-time-proxy.team-a.svc.corp.internal:9000",
    ]
    assert not any("cluster.local" in host for host in hosts)


def test_extra_hosts_follow_the_service_names_once_each() -> None:
    hosts = desired_allowed_hosts(
        server(allowedHosts=["mcp.example.com", "mcp-time-proxy", "mcp.example.com:*"]),
        cluster_domain="cluster.local",
    )
    assert hosts == [*SERVICE_NAMES, "mcp.example.com", "mcp.example.com:*"]


def test_the_runconfig_carries_the_hosts_under_the_operators_cluster_domain() -> None:
    settings = replace(SETTINGS, cluster_domain="k8s.example")
    children = desired_children(
        server(allowedHosts=["mcp.example.com"]), settings=settings, references=None
    )
    runconfig = json.loads(by_kind(children, "ConfigMap")["data"]["runconfig.json"])
    assert runconfig["allowed_hosts"][-3:] == [
        "mcp-time-proxy.team-a.svc.k8s.example",
        "mcp-time-proxy.team-a.svc.k8s.example:8080",
        "mcp.example.com",
    ]


def test_a_change_of_allowed_hosts_rolls_the_proxy() -> None:
    def checksum(**spec: object) -> str:
        runconfig = plan_mcpserver(
            server(**spec), settings=SETTINGS, references=References()
        ).runconfig
        assert runconfig is not None
        return restart_checksum(runconfig)

    assert checksum() != checksum(allowedHosts=["mcp.example.com"])


def test_the_status_url_names_a_host_the_proxy_accepts() -> None:
    settings = replace(SETTINGS, cluster_domain="k8s.example")
    srv = server(port=9000)
    plan = plan_mcpserver(srv, settings=settings, references=References())
    assert plan.runconfig is not None
    status = compute_status(
        srv, plan=plan, observed=Observed(), previous={}, now="t", cluster_domain="k8s.example"
    )
    host = urlsplit(status["url"]).netloc
    assert host == "mcp-time-proxy.team-a.svc.k8s.example:9000"
    assert host in plan.runconfig.allowed_hosts
