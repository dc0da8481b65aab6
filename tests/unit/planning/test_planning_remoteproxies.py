"""The children, RunConfig and status of an MCPRemoteProxy, and the outgoing authentication an
MCPExternalAuthConfig turns into (for remote proxies and MCPServers alike)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from planning_fixtures import NAMESPACE, PROXY_IMAGE, SETTINGS, UID, by_kind, server

from moorage_api.mcpremoteproxy import MCPRemoteProxy, parse_mcpremoteproxy
from moorage_api.runconfig import load_runconfig
from moorage_operator.planning import References, plan_mcpserver
from moorage_operator.planning.externalauth import compute_external_auth_status
from moorage_operator.planning.mcpgroups import Member
from moorage_operator.planning.mcpremoteproxies.children import plan_mcpremoteproxy
from moorage_operator.planning.mcpremoteproxies.status import (
    compute_remote_status,
    remote_available_condition,
)
from moorage_operator.planning.mcpservers.status import Observed

NOW = "2026-12-06T13:00:00Z"
LATER = "2026-12-06T13:05:00Z"


def raw_proxy(
    name: str = "docs", *, status: dict[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPRemoteProxy",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": UID, "generation": 2},
        "spec": {"remoteUrl": "https://mcp.example.com/mcp", **spec},
        "status": status or {},
    }


def proxy(**spec: Any) -> MCPRemoteProxy:
    return parse_mcpremoteproxy(raw_proxy(**spec))


def auth_config(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPExternalAuthConfig",
        "metadata": {"name": "up", "namespace": NAMESPACE, "generation": 5},
        "spec": spec,
    }


BEARER = {"type": "bearerToken", "bearerToken": {"secretRef": {"name": "s", "key": "token"}}}
INJECTION = {
    "type": "headerInjection",
    "headerInjection": {"headerName": "X-Api-Key", "valueSecretRef": {"name": "s", "key": "key"}},
}
EXCHANGE = {
    "type": "tokenExchange",
    "tokenExchange": {
        "tokenUrl": "https://idp.example.com/token",
        "clientId": "proxy",
        "clientSecretRef": {"name": "s", "key": "client"},
        "audience": "upstream",
        "scopes": ["read"],
    },
}


def children_of(**spec: Any) -> list[dict[str, Any]]:
    references = References(external_auth_config=auth_config(**BEARER))
    plan = plan_mcpremoteproxy(proxy(**spec), settings=SETTINGS, references=references)
    assert plan.problems == ()
    return list(plan.children)


def runconfig_of(children: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(json.loads(by_kind(children, "ConfigMap")["data"]["runconfig.json"]))


def secret_env_of(children: list[dict[str, Any]]) -> dict[str, Any]:
    container = by_kind(children, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def test_creates_the_proxy_runners_children_and_no_workload() -> None:
    names = [(c["kind"], c["metadata"]["name"]) for c in children_of()]
    assert names == [
        ("ServiceAccount", "docs-remote-proxy"),
        ("Role", "docs-remote-proxy"),
        ("RoleBinding", "docs-remote-proxy"),
        ("ConfigMap", "docs-remote-runconfig"),
        ("Deployment", "docs-remote-proxy"),
        ("Service", "mcp-docs-remote-proxy"),
    ]


def test_every_child_is_labelled_and_owned_by_the_proxy() -> None:
    for child in children_of():
        meta = child["metadata"]
        assert meta["labels"]["app.kubernetes.io/name"] == "mcpremoteproxy"
        assert meta["labels"]["moorage.dev/mcpremoteproxy"] == "docs"
        assert "moorage.dev/mcpserver" not in meta["labels"]
        assert [(o["kind"], o["name"], o["uid"]) for o in meta["ownerReferences"]] == [
            ("MCPRemoteProxy", "docs", UID)
        ]


def test_the_role_allows_reading_the_runconfig_and_patching_its_own_status_only() -> None:
    assert by_kind(children_of(), "Role")["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["docs-remote-runconfig"],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": ["moorage.dev"],
            "resources": ["mcpremoteproxies/status"],
            "resourceNames": ["docs"],
            "verbs": ["patch"],
        },
    ]


@pytest.mark.parametrize(
    ("spec", "replicas", "port", "affinity"),
    [
        pytest.param({}, 1, 8080, "ClientIP", id="defaults"),
        pytest.param(
            {"replicas": 3, "port": 9000, "sessionAffinity": "None"}, 3, 9000, "None", id="set"
        ),
        pytest.param({"replicas": 0}, 0, 8080, "ClientIP", id="stopped"),
    ],
)
def test_deployment_and_service_follow_the_spec(
    spec: dict[str, Any], replicas: int, port: int, affinity: str
) -> None:
    children = children_of(**spec)
    deployment = by_kind(children, "Deployment")
    assert deployment["spec"]["replicas"] == replicas
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "docs-remote-proxy"
    assert pod["containers"][0]["image"] == PROXY_IMAGE
    assert pod["containers"][0]["ports"][0]["containerPort"] == port
    service = by_kind(children, "Service")
    assert service["spec"]["ports"][0]["port"] == port
    assert service["spec"]["sessionAffinity"] == affinity
    assert service["spec"]["selector"] == {
        "moorage.dev/mcpremoteproxy": "docs",
        "app.kubernetes.io/component": "proxy-runner",
    }


def test_resources_apply_to_the_proxyrunner_container() -> None:
    resources = {"limits": {"memory": "256Mi"}, "requests": {"cpu": "100m"}}
    container = by_kind(children_of(resources=resources), "Deployment")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["resources"] == resources


def test_the_runconfig_names_the_remote_and_its_headers_without_secret_values() -> None:
    children = children_of(
        transport="sse",
        allowPrivateEndpoint=True,
        externalAuthConfigRef={"name": "up"},
        headerForward={
            "addHeaders": [{"name": "X-Team", "value": "a"}],
            "addHeadersFromSecret": [
                {"headerName": "X-One", "valueSecretRef": {"name": "h", "key": "one"}},
                {"headerName": "X-Two", "valueSecretRef": {"name": "h", "key": "two"}},
            ],
        },
    )
    runconfig = load_runconfig(by_kind(children, "ConfigMap")["data"]["runconfig.json"])
    assert runconfig.image == ""
    assert runconfig.owner is not None
    assert runconfig.owner.kind == "MCPRemoteProxy"
    assert runconfig.remote is not None
    assert (runconfig.remote.url, runconfig.remote.transport) == (
        "https://mcp.example.com/mcp",
        "sse",
    )
    assert runconfig.remote.allow_private_endpoint is True
    headers = [
        (h.name, h.value, h.value_from.env if h.value_from else None)
        for h in runconfig.remote.headers
    ]
    assert headers == [
        ("X-Team", "a", None),
        ("X-One", None, "MOORAGE_HEADER_0"),
        ("X-Two", None, "MOORAGE_HEADER_1"),
    ]
    assert runconfig.proxy_mode == "sse"
    assert f"mcp-docs-remote-proxy.{NAMESPACE}.svc.cluster.local:8080" in runconfig.allowed_hosts
    assert secret_env_of(children) == {
        "MOORAGE_HEADER_0": {"name": "h", "key": "one"},
        "MOORAGE_HEADER_1": {"name": "h", "key": "two"},
        "MOORAGE_OUTGOING_TOKEN": {"name": "s", "key": "token"},
    }


def secret_envs(rendered: dict[str, Any]) -> dict[str, str]:
    """Where each secret value of a rendered `outgoing_auth` comes from: env → Secret key."""
    found: dict[str, str] = {}
    for value in (
        rendered.get("bearer_token"),
        (rendered.get("header_injection") or {}).get("value_from"),
        (rendered.get("token_exchange") or {}).get("client_secret"),
    ):
        if value:
            ref = value["secret_key_ref"]
            found[value["env"]] = f"{ref['name']}/{ref['key']}"
    return found


@pytest.mark.parametrize(
    ("config", "secrets"),
    [
        pytest.param(BEARER, {"MOORAGE_OUTGOING_TOKEN": "s/token"}, id="bearer"),
        pytest.param(INJECTION, {"MOORAGE_OUTGOING_HEADER": "s/key"}, id="header-injection"),
        pytest.param(
            EXCHANGE, {"MOORAGE_TOKEN_EXCHANGE_CLIENT_SECRET": "s/client"}, id="token-exchange"
        ),
        pytest.param({"type": "unauthenticated"}, {}, id="unauthenticated"),
    ],
)
def test_an_auth_config_becomes_outgoing_auth_and_secret_env_for_a_server_and_a_proxy(
    config: dict[str, Any], secrets: dict[str, str]
) -> None:
    references = References(external_auth_config=auth_config(**config))
    http_server = server(
        transport="streamable-http", targetPort=3000, externalAuthConfigRef={"name": "up"}
    )
    for plan in (
        plan_mcpserver(http_server, settings=SETTINGS, references=references),
        plan_mcpremoteproxy(
            proxy(externalAuthConfigRef={"name": "up"}), settings=SETTINGS, references=references
        ),
    ):
        children = list(plan.children)
        rendered = runconfig_of(children)["outgoing_auth"]
        assert (rendered["type"], rendered["config_name"]) == (config["type"], "up")
        assert secret_envs(rendered) == secrets
        env = secret_env_of(children)
        assert {name: f"{ref['name']}/{ref['key']}" for name, ref in env.items()} == secrets


def test_token_exchange_settings_reach_the_runconfig() -> None:
    references = References(external_auth_config=auth_config(**EXCHANGE))
    plan = plan_mcpremoteproxy(
        proxy(externalAuthConfigRef={"name": "up"}), settings=SETTINGS, references=references
    )
    exchange = runconfig_of(list(plan.children))["outgoing_auth"]["token_exchange"]
    assert {k: v for k, v in exchange.items() if k != "client_secret"} == {
        "token_url": "https://idp.example.com/token",
        "client_id": "proxy",
        "client_auth": "client_secret_basic",
        "audience": "upstream",
        "scopes": ["read"],
        "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
    }


@pytest.mark.parametrize(
    ("config", "reason", "message"),
    [
        pytest.param(
            None, "ExternalAuthConfigNotFound", 'MCPExternalAuthConfig "up" not found', id="missing"
        ),
        pytest.param(
            {"type": "bearerToken"},
            "ExternalAuthConfigInvalid",
            'MCPExternalAuthConfig "up" is invalid',
            id="invalid",
        ),
    ],
)
def test_a_missing_or_invalid_auth_config_is_a_problem_naming_it(
    config: dict[str, Any] | None, reason: str, message: str
) -> None:
    references = References(external_auth_config=auth_config(**config) if config else None)
    plan = plan_mcpremoteproxy(
        proxy(externalAuthConfigRef={"name": "up"}), settings=SETTINGS, references=references
    )
    assert plan.children == ()
    (problem,) = plan.problems
    assert (problem.condition, problem.reason) == ("AuthConfigValid", reason)
    assert problem.message.startswith(message)
    assert problem.missing is (config is None)


def ready(n: int) -> dict[str, Any]:
    return {
        "metadata": {"name": "docs-remote-proxy"},
        "spec": {"replicas": 1},
        "status": {"readyReplicas": n} if n else {},
    }


def crashing_pod() -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "labels": {"app.kubernetes.io/component": "proxy-runner"}},
        "status": {
            "containerStatuses": [
                {"name": "c", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ]
        },
    }


def status_of(
    p: MCPRemoteProxy,
    observed: Observed,
    *,
    references: References | None = None,
    now: str = NOW,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    plan = plan_mcpremoteproxy(p, settings=SETTINGS, references=references or References())
    return compute_remote_status(p, plan=plan, observed=observed, previous=previous or {}, now=now)


def conditions_of(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


WAITING = "Waiting for the proxy runner"
PHASES = [
    pytest.param({}, Observed(), "Pending", f"{WAITING} Deployment to be created", id="none"),
    pytest.param(
        {},
        Observed(deployment=ready(0)),
        "Pending",
        f"{WAITING} to become ready (0/1 replicas ready)",
        id="not-ready",
    ),
    pytest.param({}, Observed(deployment=ready(1)), "Running", "Remote proxy is running", id="up"),
    pytest.param(
        {"replicas": 0},
        Observed(deployment=ready(0)),
        "Stopped",
        "Remote proxy is stopped (replicas: 0)",
        id="stopped",
    ),
    pytest.param(
        {},
        Observed(deployment=ready(1), pods=[crashing_pod()]),
        "Failed",
        "Proxy runner pod failed: CrashLoopBackOff",
        id="crash-loop",
    ),
    pytest.param(
        {"toolConfigRef": {"name": "gone"}},
        Observed(deployment=ready(1)),
        "Failed",
        'MCPToolConfig "gone" not found',
        id="missing-tool-config",
    ),
]


@pytest.mark.parametrize(("spec", "observed", "phase", "message"), PHASES)
def test_phase(spec: dict[str, Any], observed: Observed, phase: str, message: str) -> None:
    status = status_of(proxy(**spec), observed)
    assert (status["phase"], status["message"]) == (phase, message)
    assert conditions_of(status)["Ready"]["status"] == ("True" if phase == "Running" else "False")


def test_status_fields_and_url() -> None:
    status = status_of(proxy(port=9000, transport="sse"), Observed(deployment=ready(1)))
    assert set(status) == {
        "phase",
        "message",
        "url",
        "readyReplicas",
        "observedGeneration",
        "conditions",
    }
    assert status["url"] == f"http://mcp-docs-remote-proxy.{NAMESPACE}.svc.cluster.local:9000/sse"
    assert [c["type"] for c in status["conditions"]] == [
        "Ready",
        "RemoteAvailable",
        "PodTemplateValid",
        "ToolConfigResolved",
        "AuthConfigValid",
    ]


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        pytest.param(
            None,
            ("Unknown", "NotChecked", "The proxy runner has not checked the remote yet"),
            id="not-checked",
        ),
        pytest.param(
            {
                "answered": True,
                "checkedAt": NOW,
                "serverName": "docs",
                "protocolVersion": "2025-11-25",
            },
            (
                "True",
                "Answered",
                "The remote answered initialize (server docs, protocol 2025-11-25)",
            ),
            id="answered",
        ),
        pytest.param(
            {"answered": False, "checkedAt": NOW, "message": "connection refused"},
            ("False", "Unreachable", "connection refused"),
            id="unreachable",
        ),
    ],
)
def test_remote_available_follows_the_proxy_runners_check(
    check: dict[str, Any] | None, expected: tuple[str, str, str]
) -> None:
    p = parse_mcpremoteproxy(raw_proxy(status={"remoteCheck": check} if check else None))
    remote = conditions_of(status_of(p, Observed(deployment=ready(1))))["RemoteAvailable"]
    assert (remote["status"], remote["reason"], remote["message"]) == expected
    spec = remote_available_condition(p.status.remote_check)
    assert spec.status == expected[0]


def test_group_resolved_names_a_missing_group_and_the_proxy_still_runs() -> None:
    p = proxy(groupRef={"name": "team"})
    missing = status_of(p, Observed(deployment=ready(1)))
    assert missing["phase"] == "Running"
    group = conditions_of(missing)["GroupResolved"]
    assert (group["status"], group["message"]) == ("False", 'MCPGroup "team" not found')
    found = status_of(
        p,
        Observed(deployment=ready(1)),
        references=References(group={"metadata": {"name": "team"}}),
    )
    assert conditions_of(found)["GroupResolved"]["status"] == "True"


def test_an_unchanged_proxy_computes_its_stored_status() -> None:
    first = status_of(proxy(), Observed(deployment=ready(1)), now=NOW)
    again = status_of(proxy(), Observed(deployment=ready(1)), now=LATER, previous=first)
    assert again == first


def test_being_deleted_is_terminating_and_keeps_the_other_conditions() -> None:
    p = proxy()
    before = status_of(p, Observed(deployment=ready(1)))
    raw = raw_proxy()
    raw["metadata"]["deletionTimestamp"] = LATER
    deleting = parse_mcpremoteproxy(raw)
    status = compute_remote_status(
        deleting, plan=None, observed=Observed(), previous=before, now=LATER
    )
    assert status["phase"] == "Terminating"
    assert conditions_of(status)["RemoteAvailable"] == conditions_of(before)["RemoteAvailable"]


@pytest.mark.parametrize(
    ("spec", "valid"),
    [
        pytest.param(BEARER, ("True", "Valid"), id="valid"),
        pytest.param({"type": "bearerToken"}, ("False", "Invalid"), id="invalid"),
    ],
)
def test_an_auth_configs_status_lists_its_referrers_sorted(
    spec: dict[str, Any], valid: tuple[str, str]
) -> None:
    referrers = [
        Member("MCPServer", "b", None),
        Member("MCPRemoteProxy", "z", None),
        Member("MCPServer", "a", None),
    ]
    status = compute_external_auth_status(
        auth_config(**spec), referrers=referrers, previous={}, now=NOW
    )
    assert status["referencedBy"] == [
        {"kind": "MCPRemoteProxy", "name": "z"},
        {"kind": "MCPServer", "name": "a"},
        {"kind": "MCPServer", "name": "b"},
    ]
    assert status["observedGeneration"] == 5
    (condition,) = status["conditions"]
    assert (condition["type"], condition["status"], condition["reason"]) == ("Valid", *valid)
