"""The rendered deploy manifests, object by object: every overlay/component combination renders,
and what it renders holds the properties an install relies on (pod security, probes, settings,
selectors that select something, PodDisruptionBudgets only where there are two replicas).

Rendering runs `kubectl kustomize`; no apiserver is involved (tests/integration/deploy does that).
"""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
import yaml
from testkit.kustomize import (
    COMPONENTS,
    DEPLOY,
    INSTALLS,
    REPO,
    Install,
    Obj,
    container,
    env,
    find,
    of_kind,
    pod_templates,
    render,
    render_text,
)

VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
NAMESPACE = "moorage-system"
OPERATOR_ENV = (
    "POD_NAME",
    "POD_NAMESPACE",
    "WATCH_NAMESPACES",
    "LEADER_ELECTION",
    "RECONCILE_CONCURRENCY",
    "RESYNC_PERIOD",
    "PROXYRUNNER_IMAGE",
    "REGISTRY_API_IMAGE",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "METRICS_BIND",
)

install_ids = [i.id for i in INSTALLS]


@pytest.fixture(params=INSTALLS, ids=install_ids)
def install(request: pytest.FixtureRequest) -> Install:
    result: Install = request.param
    return result


@pytest.fixture
def objects(install: Install) -> list[Obj]:
    return render(install)


def operator(objects: list[Obj]) -> Obj:
    return find(objects, "Deployment", "moorage-operator", NAMESPACE)


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_base_renders_namespace_crds_operator_and_webhook() -> None:
    objects = render(Install("cluster"))
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("Namespace", NAMESPACE) in kinds
    for crd in ("mcpservers", "mcptoolconfigs", "mcpregistries"):
        assert ("CustomResourceDefinition", f"{crd}.moorage.dev") in kinds
    for expected in [
        ("ServiceAccount", "moorage-operator"),
        ("Deployment", "moorage-operator"),
        ("Service", "moorage-operator-metrics"),
        ("Role", "moorage-operator-leader-election"),
        ("RoleBinding", "moorage-operator-leader-election"),
        ("Deployment", "moorage-webhook"),
        ("Service", "moorage-webhook"),
        ("ValidatingWebhookConfiguration", "moorage-webhook"),
        ("Issuer", "moorage-selfsigned"),
        ("Certificate", "moorage-webhook"),
    ]:
        assert expected in kinds, expected


def test_namespace_enforces_restricted_pod_security() -> None:
    namespace = find(render(Install("cluster")), "Namespace", NAMESPACE)
    labels = namespace["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


def test_namespaced_objects_live_in_moorage_system(install: Install, objects: list[Obj]) -> None:
    cluster_scoped = {
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingWebhookConfiguration",
    }
    for o in objects:
        if o["kind"] in cluster_scoped:
            assert "namespace" not in o["metadata"], o["metadata"]["name"]
        elif install.overlay == "namespace" and o["kind"] == "RoleBinding":
            continue  # one per watched namespace, checked in test_deploy_rbac
        else:
            assert o["metadata"].get("namespace") == NAMESPACE, (o["kind"], o["metadata"])


def test_no_object_carries_the_label_of_operator_children(objects: list[Obj]) -> None:
    # The operator's informers select its children by app.kubernetes.io/managed-by=moorage; its
    # own Deployment and friends must not show up there.
    for o in objects:
        labels = o["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/managed-by") != "moorage", o["metadata"]["name"]


def test_every_pod_runs_restricted(objects: list[Obj]) -> None:
    templates = pod_templates(objects)
    assert {name for name, _ in templates} >= {
        "Deployment/moorage-operator",
        "Deployment/moorage-webhook",
    }
    for name, template in templates:
        spec = template["spec"]
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, name
        assert pod.get("runAsUser") == 65534, name
        assert pod.get("runAsGroup") == 65534, name
        assert pod.get("seccompProfile") == {"type": "RuntimeDefault"}, name
        assert not spec.get("hostNetwork"), name
        assert not spec.get("hostPID"), name
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c.get("securityContext", {})
            where = f"{name} container {c['name']}"
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where
            assert sc.get("privileged") in (None, False), where
            assert sc.get("seccompProfile", {"type": "RuntimeDefault"}) == {
                "type": "RuntimeDefault"
            }, where
            assert sc.get("runAsUser", 65534) == 65534, where
            assert "memory" in c.get("resources", {}).get("limits", {}), where
            assert {"cpu", "memory"} <= set(c.get("resources", {}).get("requests", {})), where


def test_operator_is_configured_as_the_spec_says(objects: list[Obj]) -> None:
    c = container(operator(objects), "operator")
    variables = env(c)
    assert set(OPERATOR_ENV) <= set(variables)
    assert variables["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert variables["POD_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    assert variables["LEADER_ELECTION"]["value"] == "true"
    assert variables["METRICS_BIND"]["value"] == ":8443"
    assert c["ports"] == [{"name": "metrics", "containerPort": 8443, "protocol": "TCP"}]
    assert c["command"] == ["moorage-operator"]


def test_operator_settings_parse_with_the_operators_own_parser(objects: list[Obj]) -> None:
    # The values an install sets must be ones the operator accepts (it exits 2 otherwise). The
    # downward-API values are the kubelet's to fill; stand-ins take their place.
    from moorage_operator.settings import OperatorSettings

    variables = env(container(operator(objects), "operator"))
    environ = {k: v["value"] for k, v in variables.items() if "value" in v}
    environ |= {"POD_NAME": "moorage-operator-0", "POD_NAMESPACE": NAMESPACE}
    settings = OperatorSettings.from_env_and_args([], environ=environ)
    assert settings.metrics_bind[1] == 8443
    assert settings.leader_election
    assert settings.proxyrunner_image == environ["PROXYRUNNER_IMAGE"]
    assert ",".join(settings.watch_namespaces) == environ["WATCH_NAMESPACES"]


@pytest.mark.parametrize("name", ["moorage-operator", "moorage-webhook"])
def test_probes_are_https_healthz_and_readyz(name: str) -> None:
    deployment = find(render(Install("cluster")), "Deployment", name, NAMESPACE)
    c = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path
        assert get["scheme"] == "HTTPS"
        assert ports[get["port"]] in (8443, 9443)
    if name == "moorage-operator":
        assert ports[c["livenessProbe"]["httpGet"]["port"]] == 8443


def test_images_and_image_settings_carry_the_release_version(objects: list[Obj]) -> None:
    images = {
        c["name"]: c["image"]
        for _, template in pod_templates(objects)
        for c in template["spec"]["containers"]
    }
    assert images["operator"] == f"ghcr.io/moorage/moorage-operator:{VERSION}"
    assert images["webhook"] == f"ghcr.io/moorage/moorage-webhook:{VERSION}"
    variables = env(container(operator(objects), "operator"))
    assert (
        variables["PROXYRUNNER_IMAGE"]["value"] == f"ghcr.io/moorage/moorage-proxyrunner:{VERSION}"
    )
    assert variables["REGISTRY_API_IMAGE"]["value"] == (
        f"ghcr.io/moorage/moorage-registry-api:{VERSION}"
    )


def test_services_select_pods_on_named_ports(objects: list[Obj]) -> None:
    templates = dict(pod_templates(objects))
    for service in of_kind(objects, "Service"):
        selector = service["spec"]["selector"]
        selected = [
            t for t in templates.values() if matches(selector, t["metadata"].get("labels", {}))
        ]
        assert selected, f"Service {service['metadata']['name']} selects no pod"
        for port in service["spec"]["ports"]:
            names = {
                p["name"] for t in selected for c in t["spec"]["containers"] for p in c["ports"]
            }
            assert port["targetPort"] in names, (service["metadata"]["name"], port)
    metrics = find(objects, "Service", "moorage-operator-metrics", NAMESPACE)
    assert [p["port"] for p in metrics["spec"]["ports"]] == [8443]


def test_deployment_selectors_match_their_templates(objects: list[Obj]) -> None:
    for deployment in of_kind(objects, "Deployment"):
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert matches(selector, deployment["spec"]["template"]["metadata"]["labels"])


def test_selectors_of_operator_and_webhook_do_not_overlap(objects: list[Obj]) -> None:
    op = operator(objects)["spec"]["template"]["metadata"]["labels"]
    webhook = find(objects, "Deployment", "moorage-webhook", NAMESPACE)
    assert not matches(webhook["spec"]["selector"]["matchLabels"], op)
    assert not matches(
        operator(objects)["spec"]["selector"]["matchLabels"],
        webhook["spec"]["template"]["metadata"]["labels"],
    )


def test_a_disruption_budget_exists_exactly_where_there_are_two_replicas(
    objects: list[Obj],
) -> None:
    budgets = of_kind(objects, "PodDisruptionBudget")
    for deployment in of_kind(objects, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [b for b in budgets if matches(b["spec"]["selector"]["matchLabels"], labels)]
        replicas = deployment["spec"].get("replicas", 1)
        name = deployment["metadata"]["name"]
        if replicas > 1:
            assert len(covering) == 1, f"{name}: {replicas} replicas need one PDB"
            assert covering[0]["spec"]["minAvailable"] == 1
        else:
            assert not covering, f"{name}: a PDB on one replica blocks node drains"


def test_ha_runs_two_spread_operator_replicas(install: Install, objects: list[Obj]) -> None:
    spec = operator(objects)["spec"]
    if not install.has("ha"):
        assert spec["replicas"] == 1
        return
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    keys = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
    assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    preferred = pod["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert preferred[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    for constraint in pod["topologySpreadConstraints"]:
        assert matches(
            constraint["labelSelector"]["matchLabels"], spec["template"]["metadata"]["labels"]
        )


SIZE_TABLE = {
    None: ("4", "10h", "192Mi", "384Mi"),
    "size-medium": ("8", "12h", "768Mi", "1536Mi"),
    "size-large": ("16", "24h", "2Gi", "4Gi"),
}


def test_size_components_set_concurrency_resync_and_resources(
    install: Install, objects: list[Obj]
) -> None:
    size = next((c for c in install.components if c.startswith("size-")), None)
    concurrency, resync, request, limit = SIZE_TABLE[size]
    c = container(operator(objects), "operator")
    variables = env(c)
    assert variables["RECONCILE_CONCURRENCY"]["value"] == concurrency
    assert variables["RESYNC_PERIOD"]["value"] == resync
    assert c["resources"]["requests"]["memory"] == request
    assert c["resources"]["limits"]["memory"] == limit
    # Patches merge env by name: nothing is lost or doubled.
    assert len(c["env"]) == len(variables) == len(OPERATOR_ENV)


def test_size_large_adds_a_webhook_replica() -> None:
    webhook = find(render(Install("cluster", ("size-large",))), "Deployment", "moorage-webhook")
    assert webhook["spec"]["replicas"] == 3


def test_monitoring_and_network_policy_only_when_asked(
    install: Install, objects: list[Obj]
) -> None:
    monitoring = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    kinds = {o["kind"] for o in objects}
    assert bool(kinds & monitoring) == install.has("monitoring")
    assert ("NetworkPolicy" in kinds) == install.has("network-policy")


WITH_NETWORK_POLICY = [i for i in INSTALLS if i.has("network-policy")]


@pytest.mark.parametrize("install", WITH_NETWORK_POLICY, ids=[i.id for i in WITH_NETWORK_POLICY])
def test_network_policies_deny_by_default_and_open_only_what_is_needed(
    install: Install, objects: list[Obj]
) -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(objects, "NetworkPolicy")}
    deny = policies["moorage-default-deny"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    templates = dict(pod_templates(objects))
    op_labels = templates["Deployment/moorage-operator"]["metadata"]["labels"]
    webhook_labels = templates["Deployment/moorage-webhook"]["metadata"]["labels"]

    def selects(spec: dict[str, Any], labels: dict[str, str]) -> bool:
        selector = spec["podSelector"]
        expressions = selector.get("matchExpressions", [])
        assert all(e["operator"] == "In" for e in expressions), expressions
        return matches(selector.get("matchLabels", {}), labels) and all(
            labels.get(e["key"]) in e["values"] for e in expressions
        )

    def ports(rules: list[dict[str, Any]]) -> set[tuple[str, int]]:
        return {(p["protocol"], p["port"]) for r in rules for p in r["ports"]}

    egress: dict[str, set[tuple[str, int]]] = {"operator": set(), "webhook": set()}
    ingress: dict[str, set[tuple[str, int]]] = {"operator": set(), "webhook": set()}
    for spec in policies.values():
        for who, labels in (("operator", op_labels), ("webhook", webhook_labels)):
            if selects(spec, labels):
                egress[who] |= ports(spec.get("egress", []))
                ingress[who] |= ports(spec.get("ingress", []))
    dns = {("UDP", 53), ("TCP", 53)}
    assert egress["operator"] == dns | {("TCP", 443), ("TCP", 6443), ("TCP", 22)}
    # The webhook follows MCPTenants through the apiserver.
    assert egress["webhook"] == dns | {("TCP", 443), ("TCP", 6443)}
    assert ingress["operator"] == {("TCP", 8443)}
    assert ingress["webhook"] == {("TCP", 8443), ("TCP", 9443)}
    metrics_from = policies["moorage-metrics-ingress"]["ingress"][0]["from"]
    assert metrics_from == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]


CIDR_PATCH = """
patches:
  - target: {kind: NetworkPolicy, name: moorage-apiserver-egress}
    patch: |-
      - op: replace
        path: /spec/egress/0/to/0/ipBlock/cidr
        value: 172.18.0.2/32
  - target: {kind: NetworkPolicy, name: moorage-webhook-ingress}
    patch: |-
      - op: replace
        path: /spec/ingress/0/from/0/ipBlock/cidr
        value: 172.18.0.0/28
"""


def test_the_documented_patches_narrow_apiserver_addresses() -> None:
    text = render_text(Install("cluster", ("network-policy",)), extra=CIDR_PATCH)
    objects = [d for d in yaml.safe_load_all(text) if d]
    apiserver = find(objects, "NetworkPolicy", "moorage-apiserver-egress")
    assert apiserver["spec"]["egress"][0]["to"] == [{"ipBlock": {"cidr": "172.18.0.2/32"}}]
    webhook = find(objects, "NetworkPolicy", "moorage-webhook-ingress")
    assert webhook["spec"]["ingress"][0]["from"] == [{"ipBlock": {"cidr": "172.18.0.0/28"}}]
    # The documented patches are the ones the docs and the component's comments show.
    docs = (REPO / "docs" / "operations.md").read_text()
    assert "/spec/egress/0/to/0/ipBlock/cidr" in docs
    assert "/spec/ingress/0/from/0/ipBlock/cidr" in docs


def test_a_missing_component_is_an_error_not_a_silent_skip() -> None:
    with pytest.raises(AssertionError, match="kustomize cluster\\+no-such-thing failed"):
        render_text(Install("cluster", ("no-such-thing",)))


def test_every_component_folder_is_a_component_and_tested() -> None:
    folders = sorted((DEPLOY / "components").iterdir())
    assert {f.name for f in folders} == set(COMPONENTS)
    assert {c for i in INSTALLS for c in i.components} == set(COMPONENTS)
    for folder in folders:
        doc = yaml.safe_load((folder / "kustomization.yaml").read_text())
        assert doc["kind"] == "Component", folder.name
