"""What scaling a proxy out changes in the children of every kind that runs one: the shared
state (`sessionStorage`, `rateLimits`) reaches the RunConfig and the pod, several replicas get a
PodDisruptionBudget, every proxy pod knows its IP and has a grace period covering the drain, and
a stdio server with Redis runs as many proxies as asked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from planning_fixtures import NAMESPACE, SETTINGS, UID, by_kind, raw_server, server

from moorage_api.mcpremoteproxy import parse_mcpremoteproxy
from moorage_api.runconfig import REDIS_PASSWORD_ENV, load_runconfig
from moorage_api.virtualmcpserver import parse_virtualmcpserver
from moorage_operator.planning import References, plan_mcpserver
from moorage_operator.planning.mcpremoteproxies.children import plan_mcpremoteproxy
from moorage_operator.planning.virtualmcpservers.backends import group_members
from moorage_operator.planning.virtualmcpservers.children import GroupView, plan_virtualmcpserver

JsonObject = dict[str, Any]

REDIS = {
    "type": "redis",
    "redis": {
        "address": "redis.cache:6379",
        "passwordSecretRef": {"name": "redis-auth", "key": "password"},
        "tls": {"enabled": True, "caConfigMapRef": {"name": "redis-ca", "key": "ca.crt"}},
    },
}
LIMITS = {"perSubject": {"requestsPerMinute": 60, "burst": 5}}
GROUP = {"apiVersion": "moorage.dev/v1alpha1", "kind": "MCPGroup", "metadata": {"name": "tools"}}
MEMBER = raw_server("time", transport="streamable-http", groupRef={"name": "tools"})


def server_children(**spec: Any) -> list[JsonObject]:
    plan = plan_mcpserver(server(**spec), settings=SETTINGS, references=References())
    assert not plan.problems, plan.problems
    return list(plan.children)


def remote_children(**spec: Any) -> list[JsonObject]:
    proxy = parse_mcpremoteproxy(
        {
            "metadata": {"name": "docs", "namespace": NAMESPACE, "uid": UID},
            "spec": {"remoteUrl": "https://mcp.example.com/mcp", **spec},
        }
    )
    plan = plan_mcpremoteproxy(proxy, settings=SETTINGS, references=References())
    assert not plan.problems, plan.problems
    return list(plan.children)


def vmcp_children(**spec: Any) -> list[JsonObject]:
    hub = parse_virtualmcpserver(
        {
            "metadata": {"name": "hub", "namespace": NAMESPACE, "uid": UID},
            "spec": {"groupRef": {"name": "tools"}, **spec},
        }
    )
    view = GroupView(group=GROUP, members=group_members(servers=[MEMBER], remote_proxies=[]))
    plan = plan_virtualmcpserver(hub, settings=SETTINGS, view=view)
    assert not plan.problems, plan.problems
    return list(plan.children)


KINDS: dict[str, tuple[Callable[..., list[JsonObject]], str]] = {
    "mcpserver": (lambda **spec: server_children(transport="streamable-http", **spec), "time"),
    "mcpremoteproxy": (remote_children, "docs-remote-proxy"),
    "virtualmcpserver": (vmcp_children, "hub-vmcp"),
}


def pod_spec(children: list[JsonObject]) -> JsonObject:
    return dict(by_kind(children, "Deployment")["spec"]["template"]["spec"])


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_runconfig_carries_the_shared_state_with_a_prefix_of_its_own(kind: str) -> None:
    build, deployment = KINDS[kind]
    made = build(sessionStorage=REDIS, rateLimits=LIMITS)
    rc = load_runconfig(by_kind(made, "ConfigMap")["data"]["runconfig.json"])
    assert rc.rate_limits is not None
    assert rc.rate_limits.per_subject is not None
    assert rc.rate_limits.per_subject.burst == 5
    redis = rc.session_storage.redis
    assert redis is not None
    assert redis.address == "redis.cache:6379"
    assert redis.key_prefix == f"moorage:{NAMESPACE}:{deployment}:"


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_proxy_gets_the_redis_password_and_may_read_the_ca(kind: str) -> None:
    build, _ = KINDS[kind]
    made = build(sessionStorage=REDIS)
    env = pod_spec(made)["containers"][0]["env"]
    assert {
        "name": REDIS_PASSWORD_ENV,
        "valueFrom": {"secretKeyRef": {"name": "redis-auth", "key": "password"}},
    } in env
    configmaps = next(r for r in by_kind(made, "Role")["rules"] if r["resources"] == ["configmaps"])
    assert "redis-ca" in configmaps["resourceNames"]


@pytest.mark.parametrize("kind", list(KINDS))
def test_memory_storage_names_no_password_and_no_ca(kind: str) -> None:
    build, _ = KINDS[kind]
    made = build()
    rc = load_runconfig(by_kind(made, "ConfigMap")["data"]["runconfig.json"])
    assert rc.session_storage.type == "memory"
    assert rc.rate_limits is None
    assert all(v["name"] != REDIS_PASSWORD_ENV for v in pod_spec(made)["containers"][0]["env"])
    configmaps = next(r for r in by_kind(made, "Role")["rules"] if r["resources"] == ["configmaps"])
    assert "redis-ca" not in configmaps["resourceNames"]


@pytest.mark.parametrize("kind", list(KINDS))
def test_several_replicas_get_a_disruption_budget_of_one_pod(kind: str) -> None:
    build, deployment = KINDS[kind]
    made = build(replicas=2, sessionStorage=REDIS)
    budget = by_kind(made, "PodDisruptionBudget")
    assert budget["apiVersion"] == "policy/v1"
    assert budget["metadata"]["name"] == deployment
    assert budget["metadata"]["ownerReferences"][0]["uid"] == UID
    assert budget["metadata"]["annotations"]["moorage.dev/applied-hash"]
    assert budget["spec"] == {
        "maxUnavailable": 1,
        "selector": by_kind(made, "Deployment")["spec"]["selector"],
    }


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("replicas", [0, 1, None])
def test_one_replica_or_fewer_gets_no_disruption_budget(kind: str, replicas: int | None) -> None:
    build, _ = KINDS[kind]
    if replicas is None and kind != "mcpserver":
        pytest.skip("only an MCPServer leaves replicas unset")
    spec = {} if replicas is None else {"replicas": replicas}
    assert not [c for c in build(**spec) if c["kind"] == "PodDisruptionBudget"]


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_proxy_pod_knows_its_ip_and_has_time_to_drain(kind: str) -> None:
    build, _ = KINDS[kind]
    spec = pod_spec(build())
    env = spec["containers"][0]["env"]
    assert {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in env
    assert spec["terminationGracePeriodSeconds"] == 30


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_deleted_proxy_pod_pauses_before_it_drains_within_its_grace_period(kind: str) -> None:
    build, _ = KINDS[kind]
    spec = pod_spec(build())
    pause = spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pause == 5
    assert pause + 10 < spec["terminationGracePeriodSeconds"]  # 10 s: the default drain


def test_a_pod_ip_override_does_not_replace_the_downward_api() -> None:
    made = server_children(
        resourceOverrides={"proxyDeployment": {"env": [{"name": "POD_IP", "value": "1.2.3.4"}]}}
    )
    env = [v for v in pod_spec(made)["containers"][0]["env"] if v["name"] == "POD_IP"]
    assert env == [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]


@pytest.mark.parametrize(
    ("storage", "replicas", "strategy", "capped"),
    [
        pytest.param(None, 3, {"type": "Recreate"}, True, id="memory-capped"),
        pytest.param(
            REDIS,
            3,
            {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            False,
            id="redis-one-at-a-time",
        ),
    ],
)
def test_a_stdio_server_with_redis_runs_every_replica_asked_for(
    storage: JsonObject | None, replicas: int, strategy: JsonObject, capped: bool
) -> None:
    spec: dict[str, Any] = {"replicas": replicas}
    if storage is not None:
        spec["sessionStorage"] = storage
    plan = plan_mcpserver(server(**spec), settings=SETTINGS, references=References())
    deployment = by_kind(list(plan.children), "Deployment")
    assert deployment["spec"]["replicas"] == (1 if capped else replicas)
    assert deployment["spec"]["strategy"] == strategy
    assert plan.replicas_capped is capped
    budgets = [c for c in plan.children if c["kind"] == "PodDisruptionBudget"]
    assert len(budgets) == (0 if capped else 1)


def test_stdio_proxies_sharing_redis_know_how_many_they_are() -> None:
    rc = load_runconfig(
        by_kind(server_children(replicas=3, sessionStorage=REDIS), "ConfigMap")["data"][
            "runconfig.json"
        ]
    )
    assert rc.proxy_replicas == 3


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"replicas": 3, "transport": "streamable-http"}, id="http"),
        pytest.param({"replicas": 1}, id="stdio-one"),
        pytest.param({}, id="stdio-unset"),
    ],
)
def test_other_proxies_are_not_told_their_count(spec: dict[str, Any]) -> None:
    if spec.get("replicas", 1) > 1:
        spec["sessionStorage"] = REDIS
    rc = load_runconfig(by_kind(server_children(**spec), "ConfigMap")["data"]["runconfig.json"])
    assert rc.proxy_replicas is None


def test_scaling_stdio_proxies_does_not_roll_them() -> None:
    def template(replicas: int) -> JsonObject:
        made = server_children(replicas=replicas, sessionStorage=REDIS)
        return dict(by_kind(made, "Deployment")["spec"]["template"])

    assert template(2) == template(3)


def test_stdio_proxies_sharing_redis_attach_to_their_ordinals_and_hold_leases() -> None:
    made = server_children(replicas=3, sessionStorage=REDIS)
    rules = by_kind(made, "Role")["rules"]
    attach = next(r for r in rules if r["resources"] == ["pods/attach"])
    assert attach["resourceNames"] == ["time-0", "time-1", "time-2"]
    pods = next(r for r in rules if r["resources"] == ["pods"])
    assert "resourceNames" not in pods
    assert pods["verbs"] == ["get", "list", "watch"]
    assert not [r for r in rules if "coordination.k8s.io" in r["apiGroups"]]
    binding = by_kind(made, "RoleBinding", "time-proxy-runner-leases")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "moorage-proxyrunner-stdio-leases",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "time-proxy-runner", "namespace": NAMESPACE}
    ]
    assert binding["metadata"]["ownerReferences"][0]["uid"] == UID


@pytest.mark.parametrize(
    "spec",
    [pytest.param({}, id="stdio-memory"), pytest.param({"transport": "sse"}, id="http-memory")],
)
def test_other_servers_get_no_lease_binding(spec: dict[str, Any]) -> None:
    made = server_children(**spec)
    assert [b["metadata"]["name"] for b in made if b["kind"] == "RoleBinding"] == [
        "time-proxy-runner"
    ]
