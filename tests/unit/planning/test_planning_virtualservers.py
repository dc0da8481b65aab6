"""A VirtualMCPServer's backends, children, RunConfig and status, as tables of inputs and what
planning makes of them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from planning_fixtures import (
    NAMESPACE,
    PROXY_IMAGE,
    SETTINGS,
    UID,
    by_kind,
    raw_server,
    tool_config,
)

from moorage_api.runconfig import load_runconfig
from moorage_api.virtualmcpserver import VirtualMCPServer, parse_virtualmcpserver
from moorage_operator.planning.mcpservers.status import Observed
from moorage_operator.planning.virtualmcpservers.backends import (
    backend_env,
    group_members,
)
from moorage_operator.planning.virtualmcpservers.children import (
    GroupView,
    VirtualServerPlan,
    plan_virtualmcpserver,
)
from moorage_operator.planning.virtualmcpservers.status import compute_vmcp_status

NOW = "2026-12-06T13:00:00Z"
GROUP = {"apiVersion": "moorage.dev/v1alpha1", "kind": "MCPGroup", "metadata": {"name": "tools"}}
DOMAIN = "svc.cluster.local"


def raw_vmcp(*, status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "VirtualMCPServer",
        "metadata": {"name": "hub", "namespace": NAMESPACE, "uid": UID, "generation": 4},
        "spec": {"groupRef": {"name": "tools"}, **spec},
        "status": status or {},
    }


def vmcp(*, status: dict[str, Any] | None = None, **spec: Any) -> VirtualMCPServer:
    return parse_virtualmcpserver(raw_vmcp(status=status, **spec))


def raw_remote(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPRemoteProxy",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"remoteUrl": "https://mcp.example.com/mcp", "groupRef": {"name": "tools"}, **spec},
    }


def auth_config(name: str, secret: str) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPExternalAuthConfig",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"type": "bearerToken", "bearerToken": {"secretRef": {"name": secret, "key": "t"}}},
    }


TIME = raw_server("time", transport="streamable-http", groupRef={"name": "tools"})
FETCH = raw_server("fetch", proxyMode="sse", groupRef={"name": "tools"})
DOCS = raw_remote("docs", transport="sse", externalAuthConfigRef={"name": "docs-token"})


def view(
    *, servers: list[Any] = (TIME, FETCH), remotes: list[Any] = (DOCS,), **found: Any
) -> GroupView:
    members = group_members(servers=list(servers), remote_proxies=list(remotes))
    return GroupView(group=found.pop("group", GROUP), members=members, **found)


EXCHANGE = {
    "apiVersion": "moorage.dev/v1alpha1",
    "kind": "MCPExternalAuthConfig",
    "metadata": {"name": "tx", "namespace": NAMESPACE},
    "spec": {
        "type": "tokenExchange",
        "tokenExchange": {
            "tokenUrl": "https://idp.example.com/token",
            "clientId": "agg",
            "audience": "docs",
        },
    },
}
AUTH = {"docs-token": auth_config("docs-token", "docs"), "override": auth_config("override", "o")}


def plan_of(server: VirtualMCPServer, groupview: GroupView) -> VirtualServerPlan:
    return plan_virtualmcpserver(server, settings=SETTINGS, view=groupview)


def runconfig_json(plan: VirtualServerPlan) -> dict[str, Any]:
    data = by_kind(list(plan.children), "ConfigMap")["data"]["runconfig.json"]
    load_runconfig(data)  # the proxy runner accepts it
    return dict(json.loads(data))


@pytest.mark.parametrize(
    ("servers", "remotes", "expected"),
    [
        pytest.param(
            [TIME, FETCH],
            [DOCS],
            [
                (
                    "docs",
                    "MCPRemoteProxy",
                    f"http://mcp-docs-remote-proxy.{NAMESPACE}.{DOMAIN}:8080/sse",
                    "sse",
                ),
                (
                    "fetch",
                    "MCPServer",
                    f"http://mcp-fetch-proxy.{NAMESPACE}.{DOMAIN}:8080/sse",
                    "sse",
                ),
                (
                    "time",
                    "MCPServer",
                    f"http://mcp-time-proxy.{NAMESPACE}.{DOMAIN}:8080/mcp",
                    "streamable-http",
                ),
            ],
            id="both-kinds-sorted",
        ),
        pytest.param(
            [raw_server("only", port=9000)],
            [],
            [
                (
                    "only",
                    "MCPServer",
                    f"http://mcp-only-proxy.{NAMESPACE}.{DOMAIN}:9000/mcp",
                    "streamable-http",
                )
            ],
            id="stdio-server-default-streamable-http",
        ),
        pytest.param([{**TIME, "spec": {"image": ""}}], [], [], id="member-that-does-not-parse"),
    ],
)
def test_members_become_backends_with_their_proxy_urls(
    servers: list[Any], remotes: list[Any], expected: list[tuple[str, str, str, str]]
) -> None:
    plan = plan_of(vmcp(), view(servers=servers, remotes=remotes, external_auth_configs=AUTH))
    if not expected:
        assert plan.children == ()
        assert plan.runconfig is None
        return
    backends = runconfig_json(plan)["aggregate"]["backends"]
    assert [(b["name"], b["kind"], b["url"], b["transport"]) for b in backends] == expected


@pytest.mark.parametrize(
    ("spec", "docs_auth", "env"),
    [
        pytest.param(
            {}, "docs-token", ("MOORAGE_BACKEND_DOCS_OUTGOING_TOKEN", "docs"), id="discovered"
        ),
        pytest.param(
            {
                "outgoingAuth": {
                    "backends": {"docs": {"externalAuthConfigRef": {"name": "override"}}}
                }
            },
            "override",
            ("MOORAGE_BACKEND_DOCS_OUTGOING_TOKEN", "o"),
            id="overridden",
        ),
    ],
)
def test_outgoing_auth_is_discovered_or_overridden_with_per_backend_secret_env(
    spec: dict[str, Any], docs_auth: str, env: tuple[str, str]
) -> None:
    plan = plan_of(vmcp(**spec), view(external_auth_configs=AUTH))
    backends = {b["name"]: b for b in runconfig_json(plan)["aggregate"]["backends"]}
    assert backends["docs"]["outgoing_auth"]["config_name"] == docs_auth
    assert backends["docs"]["outgoing_auth"]["bearer_token"]["env"] == env[0]
    assert backends["time"]["outgoing_auth"] is None
    container = by_kind(list(plan.children), "Deployment")["spec"]["template"]["spec"][
        "containers"
    ][0]
    secret_env = [e for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    assert secret_env == [
        {"name": env[0], "valueFrom": {"secretKeyRef": {"name": env[1], "key": "t"}}}
    ]


def test_a_token_exchange_backend_reaches_the_runconfig() -> None:
    spec = {"outgoingAuth": {"backends": {"docs": {"externalAuthConfigRef": {"name": "tx"}}}}}
    plan = plan_of(vmcp(**spec), view(external_auth_configs={**AUTH, "tx": EXCHANGE}))
    assert plan.problems == ()
    backends = {b["name"]: b for b in runconfig_json(plan)["aggregate"]["backends"]}
    exchange = backends["docs"]["outgoing_auth"]["token_exchange"]
    assert (exchange["token_url"], exchange["client_id"], exchange["audience"]) == (
        "https://idp.example.com/token",
        "agg",
        "docs",
    )


def test_a_backend_env_name_is_unique_per_member() -> None:
    assert (
        backend_env("my-time", "MOORAGE_OUTGOING_TOKEN") == "MOORAGE_BACKEND_MY_TIME_OUTGOING_TOKEN"
    )


def test_tool_configs_filter_and_rename_per_backend() -> None:
    found = {
        "only-now": tool_config(
            "only-now", toolsFilter=["now"], toolsOverride={"get_time": {"name": "now"}}
        )
    }
    plan = plan_of(
        vmcp(toolConfigs={"time": {"name": "only-now"}}),
        view(tool_configs=found, external_auth_configs=AUTH),
    )
    backends = {b["name"]: b for b in runconfig_json(plan)["aggregate"]["backends"]}
    assert backends["time"]["tools_filter"] == ["now"]
    assert backends["time"]["tools_override"] == {"get_time": {"name": "now", "description": None}}
    assert backends["fetch"]["tools_filter"] == []


@pytest.mark.parametrize(
    ("resolution", "expected"),
    [
        pytest.param(
            {}, {"strategy": "prefix", "separator": "_", "priority": [], "manual": {}}, id="default"
        ),
        pytest.param(
            {"strategy": "prefix", "separator": "__"},
            {"strategy": "prefix", "separator": "__", "priority": [], "manual": {}},
            id="separator",
        ),
        pytest.param(
            {"strategy": "priority", "priority": ["gone", "time", "docs"]},
            {"strategy": "priority", "separator": "_", "priority": ["time", "docs"], "manual": {}},
            id="priority-keeps-members-only",
        ),
        pytest.param(
            {
                "strategy": "manual",
                "manual": [
                    {"backend": "time", "tool": "now", "name": "time_now"},
                    {"backend": "gone", "tool": "now", "name": "gone_now"},
                ],
            },
            {
                "strategy": "manual",
                "separator": "_",
                "priority": [],
                "manual": {"time/now": "time_now"},
            },
            id="manual-keeps-members-only",
        ),
    ],
)
def test_conflict_resolution_is_rendered_for_the_members_present(
    resolution: dict[str, Any], expected: dict[str, Any]
) -> None:
    spec = {"conflictResolution": resolution} if resolution else {}
    plan = plan_of(vmcp(**spec), view(external_auth_configs=AUTH))
    assert runconfig_json(plan)["aggregate"]["conflict_resolution"] == expected


def test_the_children_are_named_labelled_and_limited() -> None:
    plan = plan_of(vmcp(), view(external_auth_configs=AUTH))
    names = sorted((c["kind"], c["metadata"]["name"]) for c in plan.children)
    assert names == [
        ("ConfigMap", "hub-vmcp-runconfig"),
        ("Deployment", "hub-vmcp"),
        ("Role", "hub-vmcp"),
        ("RoleBinding", "hub-vmcp"),
        ("Service", "mcp-hub-vmcp"),
        ("ServiceAccount", "hub-vmcp"),
    ]
    for child in plan.children:
        labels = child["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "virtualmcpserver"
        assert labels["moorage.dev/virtualmcpserver"] == "hub"
        assert child["metadata"]["ownerReferences"][0]["kind"] == "VirtualMCPServer"
    assert by_kind(list(plan.children), "Role")["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "verbs": ["get", "list", "watch"],
            "resourceNames": ["hub-vmcp-runconfig"],
        },
        {
            "apiGroups": ["moorage.dev"],
            "resources": ["virtualmcpservers/status"],
            "verbs": ["patch"],
            "resourceNames": ["hub"],
        },
    ]
    deployment = by_kind(list(plan.children), "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == PROXY_IMAGE
    rc = runconfig_json(plan)
    assert (rc["image"], rc["remote"], rc["outgoing_auth"], rc["proxy_mode"]) == (
        "",
        None,
        None,
        "streamable-http",
    )
    assert f"mcp-hub-vmcp.{NAMESPACE}.{DOMAIN}:8080" in rc["allowed_hosts"]


@pytest.mark.parametrize(
    ("spec", "groupview", "reason", "message"),
    [
        pytest.param(
            {}, view(group=None), "GroupNotFound", 'MCPGroup "tools" not found', id="no-group"
        ),
        pytest.param(
            {}, view(), "ExternalAuthConfigNotFound", "backend docs: ", id="member-auth-missing"
        ),
        pytest.param(
            {"toolConfigs": {"time": {"name": "absent"}}},
            view(external_auth_configs=AUTH),
            "ToolConfigNotFound",
            'backend time: MCPToolConfig "absent" not found',
            id="tool-config-missing",
        ),
        pytest.param(
            {"incomingAuth": {"oidcConfig": {"type": "configMap", "configMap": {"name": "idp"}}}},
            view(external_auth_configs=AUTH),
            "ConfigMapNotFound",
            'ConfigMap "idp" not found',
            id="incoming-config-map-missing",
        ),
    ],
)
def test_what_stops_planning_is_a_problem_naming_it(
    spec: dict[str, Any], groupview: GroupView, reason: str, message: str
) -> None:
    plan = plan_of(vmcp(**spec), groupview)
    assert plan.children == ()
    assert plan.problems[0].reason == reason
    assert message in plan.problems[0].message
    status = compute_vmcp_status(vmcp(**spec), plan=plan, observed=Observed(), previous={}, now=NOW)
    assert status["phase"] == "Failed"
    assert message in status["message"]


READY_DEPLOYMENT = {
    "metadata": {"name": "hub-vmcp"},
    "spec": {"replicas": 1},
    "status": {"readyReplicas": 1},
}


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in status["conditions"]}


@pytest.mark.parametrize(
    ("reported", "discovered", "backends_condition", "conflicts_condition"),
    [
        pytest.param(
            {},
            [("docs", "unknown", None), ("fetch", "unknown", None), ("time", "unknown", None)],
            ("False", "NotChecked", "Not yet checked by the aggregator: docs, fetch, time"),
            ("True", "Resolved", "No name conflict is left unresolved"),
            id="not-checked",
        ),
        pytest.param(
            {
                "backendHealth": [
                    {"name": "docs", "healthy": True, "toolCount": 3},
                    {"name": "fetch", "healthy": False, "message": "refused"},
                    {"name": "time", "healthy": True, "toolCount": 1},
                    {"name": "left", "healthy": True, "toolCount": 9},
                    {"name": "gone", "healthy": None},
                ],
                "unresolvedConflicts": [{"name": "echo", "backends": ["docs", "time"]}],
            },
            [("docs", "healthy", 3), ("fetch", "unhealthy", None), ("time", "healthy", 1)],
            ("True", "Checked", "3 backend(s) checked; unhealthy: fetch"),
            ("False", "Unresolved", "Unresolved name conflicts: echo (docs, time)"),
            id="checked-with-a-conflict",
        ),
        pytest.param(
            {
                "backendHealth": [
                    {"name": "docs", "healthy": None},
                    {"name": "fetch", "healthy": True, "toolCount": 1},
                    {"name": "time", "healthy": True, "toolCount": 2},
                ]
            },
            [("docs", "unknown", None), ("fetch", "healthy", 1), ("time", "healthy", 2)],
            ("False", "NotChecked", "Not yet checked by the aggregator: docs"),
            ("True", "Resolved", "No name conflict is left unresolved"),
            id="null-until-checked",
        ),
    ],
)
def test_status_joins_members_with_the_aggregators_reports(
    reported: dict[str, Any],
    discovered: list[tuple[str, str, int | None]],
    backends_condition: tuple[str, str, str],
    conflicts_condition: tuple[str, str, str],
) -> None:
    server = vmcp(status=reported)
    plan = plan_of(server, view(external_auth_configs=AUTH))
    status = compute_vmcp_status(
        server, plan=plan, observed=Observed(deployment=READY_DEPLOYMENT), previous={}, now=NOW
    )
    assert status["phase"] == "Running"
    assert status["url"] == f"http://mcp-hub-vmcp.{NAMESPACE}.{DOMAIN}:8080/mcp"
    assert status["backendCount"] == 3
    assert [
        (b["name"], b["health"], b.get("toolCount")) for b in status["discoveredBackends"]
    ] == discovered
    found = conditions(status)
    assert found["BackendsDiscovered"] == backends_condition
    assert found["ConflictsResolved"] == conflicts_condition
    assert found["Ready"][0] == "True"
    assert found["GroupResolved"] == ("True", "GroupFound", 'Aggregating MCPGroup "tools"')
    assert "backendHealth" not in status
    assert "unresolvedConflicts" not in status


def test_an_empty_group_has_no_aggregator_and_is_pending() -> None:
    plan = plan_of(vmcp(), view(servers=[], remotes=[]))
    assert (plan.children, plan.problems) == ((), ())
    status = compute_vmcp_status(vmcp(), plan=plan, observed=Observed(), previous={}, now=NOW)
    assert status["phase"] == "Pending"
    assert status["message"] == 'MCPGroup "tools" has no members; nothing to aggregate'
    assert (status["backendCount"], status["discoveredBackends"]) == (0, [])
    assert conditions(status)["BackendsDiscovered"][:2] == ("False", "NoMembers")


def test_a_deleted_server_keeps_its_backends_last_word() -> None:
    previous = {"discoveredBackends": [{"name": "time"}], "backendCount": 1}
    raw = raw_vmcp()
    raw["metadata"]["deletionTimestamp"] = NOW
    status = compute_vmcp_status(
        parse_virtualmcpserver(raw), plan=None, observed=Observed(), previous=previous, now=NOW
    )
    assert status["phase"] == "Terminating"
    assert (status["discoveredBackends"], status["backendCount"]) == ([{"name": "time"}], 1)


def test_the_pod_template_spec_reaches_the_aggregators_pod_under_moorages_own_settings() -> None:
    template = {
        "metadata": {"labels": {"team": "platform"}},
        "spec": {
            "tolerations": [{"key": "edge", "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [{"name": "proxyrunner", "args": ["--something-else"]}],
        },
    }
    plain = by_kind(list(plan_of(vmcp(), view(external_auth_configs=AUTH)).children), "Deployment")
    custom = by_kind(
        list(plan_of(vmcp(podTemplateSpec=template), view(external_auth_configs=AUTH)).children),
        "Deployment",
    )
    pod, plain_pod = custom["spec"]["template"], plain["spec"]["template"]
    assert pod["spec"]["tolerations"] == template["spec"]["tolerations"]
    assert pod["metadata"]["labels"] == {**plain_pod["metadata"]["labels"], "team": "platform"}
    assert pod["spec"]["containers"] == plain_pod["spec"]["containers"]
