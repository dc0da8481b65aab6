"""The children of an MCPServer (spec §3): names, labels, owner, RBAC, Deployment, Service."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from planning_fixtures import (
    NAMESPACE,
    PROXY_IMAGE,
    SETTINGS,
    UID,
    by_kind,
    config_map,
    server,
    tool_config,
)

from moorage_api.runconfig import load_runconfig
from moorage_operator.planning import PlanningError, References, desired_children
from moorage_operator.planning.comparing import ANNOTATION_APPLIED_HASH
from moorage_operator.planning.mcpservers.children import (
    desired_role,
    plan_mcpserver,
    stale_children,
)

LABELS = {
    "app": "mcpserver",
    "app.kubernetes.io/name": "mcpserver",
    "app.kubernetes.io/instance": "time",
    "app.kubernetes.io/managed-by": "moorage",
    "app.kubernetes.io/part-of": "moorage",
    "moorage.dev/mcpserver": "time",
}


def children_of(**spec: Any) -> list[dict[str, Any]]:
    return desired_children(server(**spec), settings=SETTINGS)


def deployment_of(**spec: Any) -> dict[str, Any]:
    return by_kind(children_of(**spec), "Deployment")


def container_of(**spec: Any) -> dict[str, Any]:
    containers = deployment_of(**spec)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def service_of(**spec: Any) -> dict[str, Any]:
    return by_kind(children_of(**spec), "Service")


TRANSPORTS = [
    pytest.param({"transport": "stdio"}, id="stdio"),
    pytest.param({"transport": "sse", "targetPort": 3001}, id="sse"),
    pytest.param({"transport": "streamable-http", "targetPort": 3001}, id="streamable-http"),
]


@pytest.mark.parametrize("spec", TRANSPORTS)
def test_creates_exactly_the_objects_of_the_spec(spec: dict[str, Any]) -> None:
    names = [(c["apiVersion"], c["kind"], c["metadata"]["name"]) for c in children_of(**spec)]
    assert names == [
        ("v1", "ServiceAccount", "time-proxy-runner"),
        ("rbac.authorization.k8s.io/v1", "Role", "time-proxy-runner"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding", "time-proxy-runner"),
        ("v1", "ServiceAccount", "time-sa"),
        ("v1", "ConfigMap", "time-runconfig"),
        ("apps/v1", "Deployment", "time"),
        ("v1", "Service", "mcp-time-proxy"),
    ]


@pytest.mark.parametrize("spec", TRANSPORTS)
def test_every_child_carries_the_labels_and_one_controller_owner(spec: dict[str, Any]) -> None:
    for child in children_of(**spec):
        meta = child["metadata"]
        assert meta["namespace"] == NAMESPACE
        assert meta["labels"] == LABELS
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "moorage.dev/v1alpha1",
                "kind": "MCPServer",
                "name": "time",
                "uid": UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert ANNOTATION_APPLIED_HASH in meta["annotations"]


READ = ["get", "list", "watch"]
APPLY = [*READ, "create", "patch", "delete"]


def _named(group: str, resource: str, verbs: list[str], names: list[str]) -> dict[str, Any]:
    return {"apiGroups": [group], "resources": [resource], "resourceNames": names, "verbs": verbs}


def test_role_limits_a_stdio_proxy_runner_to_its_own_objects_and_pod() -> None:
    role = by_kind(children_of(), "Role")
    assert role["rules"] == [
        _named("apps", "statefulsets", APPLY, ["time"]),
        _named("", "services", APPLY, ["mcp-time", "mcp-time-headless"]),
        _named("networking.k8s.io", "networkpolicies", APPLY, ["time-egress"]),
        _named("", "configmaps", READ, ["time-runconfig"]),
        _named("", "pods", READ, ["time-0"]),
        _named("", "pods/attach", ["create", "get"], ["time-0"]),
    ]


def test_role_of_an_http_server_reads_pods_by_label_and_never_attaches() -> None:
    role = desired_role(
        server(
            transport="streamable-http",
            permissionProfile={"type": "configMap", "name": "egress", "key": "p.json"},
        )
    )
    assert role["rules"][3] == _named("", "configmaps", READ, ["egress", "time-runconfig"])
    assert role["rules"][4:] == [{"apiGroups": [""], "resources": ["pods"], "verbs": READ}]
    assert not any(
        "pods/attach" in r["resources"] or "pods/log" in r["resources"] for r in role["rules"]
    )


def test_role_binding_binds_the_role_to_the_proxy_runner_account() -> None:
    binding = by_kind(children_of(), "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "time-proxy-runner",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "time-proxy-runner", "namespace": NAMESPACE}
    ]


def test_an_existing_service_account_replaces_the_created_one() -> None:
    children = children_of(serviceAccount="shared-mcp")
    accounts = [c["metadata"]["name"] for c in children if c["kind"] == "ServiceAccount"]
    assert accounts == ["time-proxy-runner"]
    rc = load_runconfig(by_kind(children, "ConfigMap")["data"]["runconfig.json"])
    assert rc.service_account == "shared-mcp"


def test_runconfig_configmap_holds_the_rendered_runconfig_and_its_checksum() -> None:
    cm = by_kind(children_of(), "ConfigMap")
    assert list(cm["data"]) == ["runconfig.json"]
    text = cm["data"]["runconfig.json"]
    assert cm["metadata"]["annotations"]["moorage.dev/content-checksum"] == (
        hashlib.sha256(text.encode()).hexdigest()
    )
    assert load_runconfig(text).image == "ghcr.io/example/mcp-time:1.2.0"


def test_proxy_container_runs_the_proxyrunner_image_on_the_mounted_runconfig() -> None:
    deployment = deployment_of(port=9000)
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["name"] == "proxyrunner"
    assert container["image"] == PROXY_IMAGE
    assert container["args"] == ["run", "--config", "/etc/moorage/runconfig.json"]
    assert container["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "runconfig")
    assert mount == {"name": "runconfig", "mountPath": "/etc/moorage", "readOnly": True}
    volume = next(v for v in pod["volumes"] if v["name"] == "runconfig")
    assert volume == {"name": "runconfig", "configMap": {"name": "time-runconfig"}}
    assert pod["serviceAccountName"] == "time-proxy-runner"


def test_proxy_container_knows_its_pod_name_and_namespace() -> None:
    env = container_of()["env"]
    assert env == [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]


@pytest.mark.parametrize("probe", ["readinessProbe", "livenessProbe"])
def test_proxy_probes_health(probe: str) -> None:
    assert container_of()[probe]["httpGet"] == {"path": "/health", "port": "http"}


def test_proxy_pod_meets_the_restricted_pod_security_standard() -> None:
    pod = deployment_of()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65534
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = pod["containers"][0]["securityContext"]
    assert security == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 65534,
        "runAsGroup": 65534,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_proxy_pods_are_selected_by_server_and_component() -> None:
    deployment = deployment_of()
    selector = {"moorage.dev/mcpserver": "time", "app.kubernetes.io/component": "proxy-runner"}
    assert deployment["spec"]["selector"] == {"matchLabels": selector}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels == {**LABELS, **selector}
    assert service_of()["spec"]["selector"] == selector


@pytest.mark.parametrize(
    ("spec", "replicas"),
    [
        pytest.param({}, None, id="unset-is-not-managed"),
        pytest.param({"replicas": 0}, 0, id="zero-stops"),
        pytest.param({"replicas": 1}, 1, id="one"),
        pytest.param({"replicas": 3}, 1, id="stdio-capped-at-one"),
        pytest.param({"replicas": 3, "transport": "sse"}, 3, id="sse-three"),
        pytest.param({"replicas": 2, "transport": "streamable-http"}, 2, id="http-two"),
    ],
)
def test_proxy_replicas(spec: dict[str, Any], replicas: int | None) -> None:
    assert deployment_of(**spec)["spec"].get("replicas") == replicas


@pytest.mark.parametrize(
    ("spec", "capped"),
    [
        pytest.param({"replicas": 3}, True, id="stdio-3"),
        pytest.param({"replicas": 1}, False, id="stdio-1"),
        pytest.param({}, False, id="stdio-unset"),
        pytest.param({"replicas": 3, "transport": "sse"}, False, id="sse-3"),
    ],
)
def test_plan_says_when_stdio_replicas_were_capped(spec: dict[str, Any], capped: bool) -> None:
    plan = plan_mcpserver(server(**spec), settings=SETTINGS, references=References())
    assert plan.replicas_capped is capped


@pytest.mark.parametrize(
    ("transport", "strategy"),
    [
        ("stdio", {"type": "Recreate"}),
        (
            "sse",
            {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
        ),
        (
            "streamable-http",
            {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
        ),
    ],
)
def test_stdio_proxies_are_replaced_never_overlapped(
    transport: str, strategy: dict[str, Any]
) -> None:
    assert deployment_of(transport=transport)["spec"]["strategy"] == strategy


@pytest.mark.parametrize(
    ("affinity", "config"),
    [
        ("ClientIP", {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}}}),
        ("None", {}),
    ],
)
def test_service_is_cluster_ip_on_the_proxy_port(affinity: str, config: dict[str, Any]) -> None:
    spec = service_of(port=9090, sessionAffinity=affinity)["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["ports"] == [
        {"name": "http", "port": 9090, "targetPort": "http", "protocol": "TCP"}
    ]
    assert spec["sessionAffinity"] == affinity
    assert {k: v for k, v in spec.items() if k == "sessionAffinityConfig"} == config


OVERRIDES = {
    "proxyDeployment": {
        "labels": {"team": "a", "app.kubernetes.io/managed-by": "someone-else"},
        "annotations": {"note": "deployment"},
        "env": [
            {"name": "EXTRA", "value": "1"},
            {"name": "POD_NAME", "value": "hijacked"},
        ],
        "podTemplateMetadataOverrides": {
            "labels": {"pod-team": "a", "moorage.dev/mcpserver": "other"},
            "annotations": {"pod-note": "x", "moorage.dev/runconfig-checksum": "forged"},
        },
    },
    "proxyService": {
        "labels": {"svc-team": "a", "app.kubernetes.io/part-of": "else"},
        "annotations": {"svc-note": "y"},
    },
}


def test_resource_overrides_add_metadata_but_moorage_keys_win() -> None:
    children = children_of(resourceOverrides=OVERRIDES)
    deployment = by_kind(children, "Deployment")
    assert deployment["metadata"]["labels"] == {**LABELS, "team": "a"}
    assert deployment["metadata"]["annotations"]["note"] == "deployment"
    template = deployment["spec"]["template"]["metadata"]
    assert template["labels"]["pod-team"] == "a"
    assert template["labels"]["moorage.dev/mcpserver"] == "time"
    assert template["annotations"]["pod-note"] == "x"
    assert template["annotations"]["moorage.dev/runconfig-checksum"] != "forged"
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e["name"] for e in env] == ["POD_NAME", "POD_NAMESPACE", "POD_IP", "EXTRA"]
    assert env[0]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    service = by_kind(children, "Service")
    assert service["metadata"]["labels"] == {**LABELS, "svc-team": "a"}
    assert service["metadata"]["annotations"]["svc-note"] == "y"


def test_overrides_reach_only_the_deployment_and_service() -> None:
    for child in children_of(resourceOverrides=OVERRIDES):
        if child["kind"] not in ("Deployment", "Service"):
            assert child["metadata"]["labels"] == LABELS
            assert set(child["metadata"]["annotations"]) <= {
                ANNOTATION_APPLIED_HASH,
                "moorage.dev/content-checksum",
            }


def checksum_of(children: list[dict[str, Any]]) -> str:
    template = by_kind(children, "Deployment")["spec"]["template"]
    return str(template["metadata"]["annotations"]["moorage.dev/runconfig-checksum"])


def runconfig_text(children: list[dict[str, Any]]) -> str:
    return str(by_kind(children, "ConfigMap")["data"]["runconfig.json"])


BASE: dict[str, Any] = {"transport": "streamable-http", "targetPort": 3001, "port": 8080}


@pytest.mark.parametrize(
    ("change", "rolls"),
    [
        pytest.param({"image": "ghcr.io/example/mcp-time:1.3.0"}, True, id="image"),
        pytest.param({"args": ["--verbose"]}, True, id="args"),
        pytest.param({"env": [{"name": "A", "value": "1"}]}, True, id="env"),
        pytest.param({"secrets": [{"name": "s", "key": "token"}]}, True, id="secrets"),
        pytest.param({"transport": "sse"}, True, id="transport"),
        pytest.param({"port": 9000}, True, id="port"),
        pytest.param({"targetPort": 3002}, True, id="targetPort"),
        pytest.param(
            {"podTemplateSpec": {"spec": {"nodeSelector": {"a": "b"}}}}, True, id="podTemplateSpec"
        ),
        pytest.param({"resources": {"limits": {"memory": "1Gi"}}}, True, id="resources"),
        pytest.param({"serviceAccount": "sa"}, True, id="serviceAccount"),
        pytest.param({"backendReplicas": 2}, True, id="backendReplicas"),
        pytest.param(
            {"permissionProfile": {"type": "builtin", "name": "none"}}, True, id="permissionProfile"
        ),
        pytest.param({"oidcConfig": {"type": "kubernetes"}}, True, id="oidcConfig"),
        pytest.param({"trustProxyHeaders": True}, True, id="trustProxyHeaders"),
        pytest.param({"endpointPrefix": "/x"}, True, id="endpointPrefix"),
        pytest.param(
            {
                "authzConfig": {
                    "type": "inline",
                    "inline": {"policies": ["permit(principal, action, resource);"]},
                }
            },
            False,
            id="authzConfig",
        ),
        pytest.param({"audit": {"enabled": True}}, False, id="audit"),
        pytest.param({"replicas": 2}, False, id="replicas"),
        pytest.param({"sessionAffinity": "None"}, False, id="sessionAffinity"),
        pytest.param(
            {"resourceOverrides": {"proxyService": {"labels": {"a": "b"}}}},
            False,
            id="resourceOverrides-service",
        ),
    ],
)
def test_only_workload_changes_roll_the_proxy(change: dict[str, Any], rolls: bool) -> None:
    before = children_of(**BASE)
    after = children_of(**{**BASE, **change})
    assert (checksum_of(before) != checksum_of(after)) is rolls


def test_a_tool_config_change_rewrites_the_runconfig_but_does_not_roll_the_proxy() -> None:
    srv = server(toolConfigRef={"name": "tools"})
    old = desired_children(
        srv, settings=SETTINGS, references=References(tool_config=tool_config(toolsFilter=["a"]))
    )
    new = desired_children(
        srv,
        settings=SETTINGS,
        references=References(
            tool_config=tool_config(
                toolsFilter=["a", "b"], toolsOverride={"b": {"description": "B"}}
            )
        ),
    )
    assert runconfig_text(old) != runconfig_text(new)
    assert checksum_of(old) == checksum_of(new)
    old_deployment = by_kind(old, "Deployment")
    new_deployment = by_kind(new, "Deployment")
    assert old_deployment["spec"]["template"] == new_deployment["spec"]["template"]


def test_planning_is_deterministic() -> None:
    spec = {
        "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}],
        "resourceOverrides": OVERRIDES,
        "oidcConfig": {"type": "inline", "inline": {"issuer": "https://i", "audience": "x"}},
    }
    first = json.dumps(children_of(**spec), sort_keys=True)
    assert all(json.dumps(children_of(**spec), sort_keys=True) == first for _ in range(3))


def test_proxyrunner_image_comes_from_the_settings() -> None:
    from planning_fixtures import FakeSettings

    children = desired_children(server(), settings=FakeSettings(proxyrunner_image="x/y:1"))
    assert (
        by_kind(children, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
        == "x/y:1"
    )


@pytest.mark.parametrize(
    ("spec", "references", "message"),
    [
        pytest.param(
            {"toolConfigRef": {"name": "gone"}},
            References(),
            'MCPToolConfig "gone" not found',
            id="tool-config",
        ),
        pytest.param(
            {"oidcConfig": {"type": "configMap", "configMap": {"name": "oidc"}}},
            References(),
            'ConfigMap "oidc" not found (spec.oidcConfig.configMap)',
            id="oidc-configmap",
        ),
        pytest.param(
            {"authzConfig": {"type": "configMap", "configMap": {"name": "authz"}}},
            References(config_maps={"authz": config_map("authz", other="{}")}),
            'ConfigMap "authz" has no key "authz.json" (spec.authzConfig.configMap)',
            id="authz-key",
        ),
        pytest.param(
            {"podTemplateSpec": {"spec": {"containers": [{"image": "x"}]}}},
            References(),
            "Invalid pod template: spec.podTemplateSpec.spec.containers[0].name: required",
            id="pod-template",
        ),
    ],
)
def test_children_are_not_built_from_what_cannot_be_resolved(
    spec: dict[str, Any], references: References, message: str
) -> None:
    with pytest.raises(PlanningError) as caught:
        desired_children(server(**spec), settings=SETTINGS, references=references)
    assert str(caught.value) == message
    plan = plan_mcpserver(server(**spec), settings=SETTINGS, references=references)
    assert plan.children == ()


def test_stale_children_are_the_ones_no_longer_desired_and_controlled_by_the_server() -> None:
    before = children_of()
    after = children_of(serviceAccount="shared")
    foreign = dict(by_kind(before, "ConfigMap"))
    foreign["metadata"] = {**foreign["metadata"], "name": "x", "ownerReferences": []}
    headless = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "mcp-time-headless",
            "ownerReferences": [{"controller": True, "uid": UID}],
        },
    }
    stale = stale_children(
        server(serviceAccount="shared"), desired=after, owned=[*before, foreign, headless]
    )
    assert [(c["kind"], c["metadata"]["name"]) for c in stale] == [("ServiceAccount", "time-sa")]
