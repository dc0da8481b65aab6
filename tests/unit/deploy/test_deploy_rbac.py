"""The operator's RBAC as rendered: exactly what it needs, in exactly the namespaces it watches.

A small evaluator of RBAC rules (`allows`) answers "may the operator do VERB on GROUP/RESOURCE":
the tests ask it for what the operator does (NEEDS), for every permission of the proxy runner's
Role (which RBAC's escalation prevention makes the operator hold), and for everything the
ClusterRole grants, which must be one of those two and nothing more.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from testkit.kustomize import Install, Obj, container, env, find, of_kind, render

NAMESPACE = "moorage-system"
SA = {"kind": "ServiceAccount", "name": "moorage-operator", "namespace": NAMESPACE}
CLUSTER_ROLE_REF = {
    "apiGroup": "rbac.authorization.k8s.io",
    "kind": "ClusterRole",
    "name": "moorage-operator",
}
READ = ("get", "list", "watch")
CRUD = (*READ, "create", "update", "patch", "delete")
# Server-side apply creates a missing object and patches an existing one; no `update`.
APPLY = (*READ, "create", "patch", "delete")

Permission = tuple[str, str, str]  # (apiGroup, resource, verb)


def permissions(group: str, resources: Iterable[str], verbs: Iterable[str]) -> set[Permission]:
    return {(group, r, v) for r in resources for v in verbs}


# The proxy runner's Role without its resourceNames (the rules are tested by name in
# test_planning_children and against the apiserver). The operator creates and binds it, so the
# apiserver requires the operator to hold each of these in the namespace.
PROXY_RUNNER_ROLE: set[Permission] = (
    permissions("apps", ["statefulsets"], APPLY)
    | permissions("", ["services"], APPLY)
    | permissions("", ["pods"], READ)
    | permissions("", ["pods/attach"], ["create", "get"])
    | permissions("", ["configmaps"], READ)
    | permissions("networking.k8s.io", ["networkpolicies"], APPLY)
)

# A remote proxy's Role `<name>-remote-proxy`, as the design fixes it (its proxy runner reads its
# RunConfig and writes status.remoteCheck); the operator creates it, so it holds each of these.
REMOTE_PROXY_ROLE: set[Permission] = permissions("", ["configmaps"], READ) | permissions(
    "moorage.dev", ["mcpremoteproxies/status"], ["patch"]
)

KINDS = [
    "mcpservers",
    "mcptoolconfigs",
    "mcpregistries",
    "mcpremoteproxies",
    "mcpexternalauthconfigs",
    "mcpgroups",
    "virtualmcpservers",
]
# What the operator itself does in a watched namespace (spec §2, §3, §6, and the calls the
# reconcilers make: informers list and watch, children are server-side applied and deleted,
# status and finalizers are patched, an MCPRegistry's git credentials are read by name).
NEEDS: set[Permission] = (
    permissions("moorage.dev", KINDS, (*READ, "patch"))
    | permissions("moorage.dev", [f"{k}/status" for k in KINDS], ["patch"])
    | permissions("moorage.dev", [f"{k}/finalizers" for k in KINDS], ["update"])
    | permissions("", ["configmaps", "services", "serviceaccounts"], APPLY)
    | permissions("", ["secrets"], ["get"])
    | permissions("", ["pods"], ("list", "watch"))
    | permissions("apps", ["deployments"], APPLY)
    | permissions("policy", ["poddisruptionbudgets"], APPLY)
    | permissions("apps", ["statefulsets"], ("list", "watch"))
    | permissions("rbac.authorization.k8s.io", ["roles", "rolebindings"], APPLY)
    | permissions("events.k8s.io", ["events"], ["create", "patch"])
    | permissions("", ["events"], ("list", "watch"))
)


def allows(rules: list[Obj], group: str, resource: str, verb: str, name: str | None = None) -> bool:
    """RBAC's rule matching (no non-resource URLs): any rule that names the group, the resource
    (or `*`), the verb (or `*`) and, when it lists resourceNames, the object's name."""
    for rule in rules:
        if group not in rule.get("apiGroups", []) and "*" not in rule.get("apiGroups", []):
            continue
        if resource not in rule.get("resources", []) and "*" not in rule.get("resources", []):
            continue
        if verb not in rule["verbs"] and "*" not in rule["verbs"]:
            continue
        names = rule.get("resourceNames")
        if names and name not in names:
            continue
        return True
    return False


def granted(rules: list[Obj]) -> set[Permission]:
    return {
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


def cluster_role(objects: list[Obj]) -> list[Obj]:
    rules: list[Obj] = find(objects, "ClusterRole", "moorage-operator")["rules"]
    return rules


@pytest.fixture(scope="module")
def cluster() -> list[Obj]:
    return render(Install("cluster"))


@pytest.fixture(scope="module")
def namespaced() -> list[Obj]:
    return render(Install("namespace"))


def test_operator_holds_every_permission_of_the_proxy_runner_role(cluster: list[Obj]) -> None:
    rules = cluster_role(cluster)
    missing = sorted(p for p in PROXY_RUNNER_ROLE if not allows(rules, *p))
    assert not missing, f"creating the proxy runner's Role would be refused: {missing}"


def test_operator_holds_every_permission_of_a_remote_proxys_role(cluster: list[Obj]) -> None:
    rules = cluster_role(cluster)
    missing = sorted(p for p in REMOTE_PROXY_ROLE if not allows(rules, *p, "docs"))
    assert not missing, f"creating a remote proxy's Role would be refused: {missing}"


def test_operator_holds_every_rule_of_a_virtual_servers_role(cluster: list[Obj]) -> None:
    # The rules the planner really writes into <name>-vmcp: creating it needs each of them held.
    from moorage_api.virtualmcpserver import parse_virtualmcpserver
    from moorage_operator.planning.virtualmcpservers.children import desired_vmcp_rules

    server = parse_virtualmcpserver(
        {
            "metadata": {"name": "hub", "namespace": "team-a"},
            "spec": {"groupRef": {"name": "tools"}},
        }
    )
    rules = cluster_role(cluster)
    planned = desired_vmcp_rules(server)
    missing = sorted(
        (group, resource, verb, name)
        for rule in planned
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        for name in rule["resourceNames"]
        if not allows(rules, group, resource, verb, name)
    )
    assert [r["resources"] for r in planned] == [["configmaps"], ["virtualmcpservers/status"]]
    assert not missing, f"creating a virtual server's Role would be refused: {missing}"


def test_operator_holds_every_rule_the_operator_puts_in_that_role(cluster: list[Obj]) -> None:
    # The rules the operator's planner really writes into <name>-proxy-runner, for a stdio server,
    # an HTTP server with a configMap permission profile and stdio proxies holding Leases
    # (between them, every rule).
    from moorage_api.mcpserver import parse_mcpserver
    from moorage_operator.planning.mcpservers.children import desired_proxy_runner_rules

    rules = cluster_role(cluster)
    planned: set[Permission] = set()
    for spec in (
        {"transport": "stdio"},
        {
            "transport": "streamable-http",
            "permissionProfile": {"type": "configMap", "name": "egress"},
        },
        {
            "transport": "stdio",
            "replicas": 3,
            "sessionStorage": {"type": "redis", "redis": {"address": "redis:6379"}},
        },
    ):
        server = parse_mcpserver(
            {
                "metadata": {"name": "time", "namespace": "team-a"},
                "spec": {"image": "ghcr.io/x/time:1", **spec},
            }
        )
        planned |= granted(desired_proxy_runner_rules(server))
    assert planned == PROXY_RUNNER_ROLE, "the planner and this list disagree"
    assert not sorted(p for p in planned if not allows(rules, *p))


# What the operator does to one named object only: it binds the ClusterRole of a stdio server's
# proxy Leases per MCPServer (RoleBinding <name>-proxy-runner-leases) without holding it.
NAMED_NEEDS: set[tuple[str, str, str, str]] = {
    ("rbac.authorization.k8s.io", "clusterroles", "bind", "moorage-proxyrunner-stdio-leases"),
}


def test_operator_may_do_what_it_does_to_named_objects_only_to_them(cluster: list[Obj]) -> None:
    rules = cluster_role(cluster)
    for group, resource, verb, name in NAMED_NEEDS:
        assert allows(rules, group, resource, verb, name)
        assert not allows(rules, group, resource, verb, f"{name}-other")


def test_the_stdio_leases_cluster_role_grants_only_leases(cluster: list[Obj]) -> None:
    role = find(cluster, "ClusterRole", "moorage-proxyrunner-stdio-leases")
    assert granted(role["rules"]) == permissions(
        "coordination.k8s.io", ["leases"], ["get", "create", "update"]
    )
    bound = [
        b
        for b in cluster
        if b["kind"] in ("RoleBinding", "ClusterRoleBinding")
        and b["roleRef"]["name"] == "moorage-proxyrunner-stdio-leases"
    ]
    assert bound == [], "only the operator binds it, per MCPServer"


def test_operator_may_do_what_it_does(cluster: list[Obj]) -> None:
    rules = cluster_role(cluster)
    missing = sorted(p for p in NEEDS if not allows(rules, *p))
    assert not missing


def test_operator_is_granted_nothing_else(cluster: list[Obj]) -> None:
    rules = cluster_role(cluster)
    for rule in rules:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
        assert "nonResourceURLs" not in rule
    named = {(group, resource, verb) for group, resource, verb, _ in NAMED_NEEDS}
    extra = sorted(granted(rules) - NEEDS - PROXY_RUNNER_ROLE - named)
    assert not extra, f"granted but neither needed nor held for the proxy runner: {extra}"


@pytest.mark.parametrize(
    ("group", "resource", "verb"),
    [
        ("rbac.authorization.k8s.io", "roles", "escalate"),
        ("rbac.authorization.k8s.io", "roles", "bind"),
        ("rbac.authorization.k8s.io", "clusterroles", "bind"),
        ("rbac.authorization.k8s.io", "clusterroles", "create"),
        ("rbac.authorization.k8s.io", "clusterrolebindings", "create"),
        ("", "serviceaccounts", "impersonate"),
        ("", "users", "impersonate"),
        ("", "secrets", "list"),
        ("", "secrets", "watch"),
        ("", "secrets", "create"),
        ("", "secrets", "update"),
        ("", "secrets", "delete"),
        ("", "pods", "create"),
        ("", "pods", "delete"),
        ("", "pods/exec", "create"),
        ("", "nodes", "get"),
        ("", "namespaces", "list"),
        ("", "events", "create"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "get"),
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations", "update"),
        ("coordination.k8s.io", "leases", "update"),
        ("moorage.dev", "mcpservers", "create"),
        ("moorage.dev", "mcpservers", "delete"),
        ("moorage.dev", "mcpservers", "update"),
        ("moorage.dev", "mcpremoteproxies", "create"),
        ("moorage.dev", "mcpgroups", "delete"),
        ("moorage.dev", "mcpexternalauthconfigs", "update"),
        ("apps", "deployments", "update"),
    ],
)
def test_operator_may_not(cluster: list[Obj], group: str, resource: str, verb: str) -> None:
    assert not allows(cluster_role(cluster), group, resource, verb)


def test_leader_election_role_covers_only_its_lease_and_events(cluster: list[Obj]) -> None:
    role = find(cluster, "Role", "moorage-operator-leader-election", NAMESPACE)
    rules = role["rules"]
    lease = ("coordination.k8s.io", "leases")
    assert allows(rules, *lease, "create")
    for verb in ("get", "update"):
        assert allows(rules, *lease, verb, "moorage-operator")
        assert not allows(rules, *lease, verb, "someone-elses-lease")
    assert not allows(rules, *lease, "delete", "moorage-operator")
    assert not allows(rules, *lease, "list")
    assert allows(rules, "events.k8s.io", "events", "create")
    assert allows(rules, "events.k8s.io", "events", "patch")
    binding = find(cluster, "RoleBinding", "moorage-operator-leader-election", NAMESPACE)
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [SA]


def test_cluster_overlay_binds_the_role_cluster_wide(cluster: list[Obj]) -> None:
    binding = find(cluster, "ClusterRoleBinding", "moorage-operator")
    assert binding["roleRef"] == CLUSTER_ROLE_REF
    assert binding["subjects"] == [SA]
    rolebindings = [b["metadata"]["name"] for b in of_kind(cluster, "RoleBinding")]
    assert rolebindings == ["moorage-operator-leader-election"]
    operator = find(cluster, "Deployment", "moorage-operator")
    assert env(container(operator, "operator"))["WATCH_NAMESPACES"]["value"] == ""


def test_namespace_overlay_binds_the_role_only_in_watched_namespaces(
    namespaced: list[Obj],
) -> None:
    operator = find(namespaced, "Deployment", "moorage-operator")
    watched = env(container(operator, "operator"))["WATCH_NAMESPACES"]["value"].split(",")
    assert watched == ["team-a", "team-b"]
    # Cluster-wide bindings only for reading MCPTenants: the webhook, and the proxy runners of
    # the watched namespaces (their ServiceAccounts' groups).
    cluster_bindings = {b["metadata"]["name"]: b for b in of_kind(namespaced, "ClusterRoleBinding")}
    assert set(cluster_bindings) == {"moorage-webhook", "moorage-proxyrunner-mcptenants"}
    proxyrunners = cluster_bindings["moorage-proxyrunner-mcptenants"]["subjects"]
    assert [s["name"] for s in proxyrunners] == [f"system:serviceaccounts:{n}" for n in watched]
    bindings = [
        b
        for b in of_kind(namespaced, "RoleBinding")
        if b["metadata"]["name"] != "moorage-operator-leader-election"
    ]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted(watched)
    for binding in bindings:
        assert binding["roleRef"] == CLUSTER_ROLE_REF
        assert binding["subjects"] == [SA]
    # The same rules as cluster mode, so every reconcile works the same in a watched namespace.
    assert find(namespaced, "ClusterRole", "moorage-operator") == find(
        render(Install("cluster")), "ClusterRole", "moorage-operator"
    )
    # Its own namespace still gets its Lease and Events.
    assert find(namespaced, "RoleBinding", "moorage-operator-leader-election", NAMESPACE)


def test_users_get_our_kinds_through_the_builtin_roles(cluster: list[Obj]) -> None:
    edit = find(cluster, "ClusterRole", "moorage-edit")
    view = find(cluster, "ClusterRole", "moorage-view")
    edit_labels = edit["metadata"]["labels"]
    assert edit_labels["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert edit_labels["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    for kind in KINDS:
        assert allows(edit["rules"], "moorage.dev", kind, "create")
        assert allows(view["rules"], "moorage.dev", kind, "list")
        assert not allows(view["rules"], "moorage.dev", kind, "update")
        # Status belongs to the operator.
        assert not allows(edit["rules"], "moorage.dev", f"{kind}/status", "update")
    # MCPTenants are an admin's: the roles namespace users get hold no verb on them.
    for verb in ("get", "list", "create", "update", "patch", "delete"):
        assert not allows(edit["rules"], "moorage.dev", "mcptenants", verb)
        assert not allows(view["rules"], "moorage.dev", "mcptenants", verb)


def test_the_evaluator_honours_names_groups_and_wildcards() -> None:
    rules = [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["*"], "verbs": ["list"], "resourceNames": ["x"]},
    ]
    assert allows(rules, "apps", "deployments", "get")
    assert not allows(rules, "", "deployments", "get")
    assert not allows(rules, "apps", "deployments", "list")
    assert allows(rules, "", "pods", "list", "x")
    assert not allows(rules, "", "pods", "list", "y")
    assert not allows(rules, "", "pods", "list")
