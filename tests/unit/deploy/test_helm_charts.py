"""The Helm charts of deploy/charts, rendered with `helm template` (Helm 4, and Helm 3 where the
charts promise compatibility): they render what kustomize renders, values change what they say,
and wrong values are refused with the field named.

One source of truth: for every kustomize install of `testkit.kustomize.INSTALLS` (each overlay,
each component, the usual mixes) the operator chart, given the equivalent values, renders the same
objects apart from Helm's own labels; the crds chart holds crdgen's CRDs. No apiserver here
(tests/integration/deploy/test_helm_install.py installs the charts).
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from testkit.helm import (
    CRDS_CHART,
    OPERATOR_CHART,
    HelmFailed,
    by_identity,
    equivalent_values,
    run,
    template,
    without_helm_labels,
)
from testkit.kustomize import INSTALLS, REPO, Install, Obj, container, env, find, render

from moorage_api.chartvalues import CrdsChartValues, OperatorChartValues, Values
from moorage_dev.helm_binaries import HELM3_VERSION, HELM_VERSION

HELM_VERSIONS = pytest.mark.parametrize(
    "version", [HELM_VERSION, HELM3_VERSION], ids=["helm4", "helm3"]
)
NOT_IN_THE_OPERATOR_CHART = frozenset({"CustomResourceDefinition", "Namespace"})
"""The CRDs are the crds chart's; the namespace is Helm's (`--create-namespace`)."""
TLS_SECRET = {"certManager": {"enabled": False}, "tls": {"secretName": "mine", "caBundle": "Q0E="}}
DIGEST = "sha256:" + "ab" * 32


def comparable(obj: Obj) -> Obj:
    """`obj` without Helm's labels, its containers' env in name order: kustomize's strategic
    merge moves patched env entries to the front, an order nothing reads."""
    obj = without_helm_labels(copy.deepcopy(obj))
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    for c in spec.get("containers", []):
        if "env" in c:
            c["env"] = sorted(c["env"], key=lambda e: e["name"])
    return obj


def operator_objects(*values: dict[str, Any], **kwargs: Any) -> list[Obj]:
    return template(OPERATOR_CHART, *values, **kwargs)


def refusal(*values: dict[str, Any], version: str = HELM_VERSION) -> str:
    with pytest.raises(HelmFailed) as failed:
        operator_objects(*values, version=version)
    return failed.value.stderr


def mentions_field(stderr: str, path: str) -> bool:
    """Helm 4 names a field `/operator/rbac/scope`, Helm 3 `operator.rbac.scope`."""
    return path in stderr or "/" + path.replace(".", "/") in stderr


# -- one source of truth ---------------------------------------------------------------------------


@pytest.mark.parametrize("install", INSTALLS, ids=[i.id for i in INSTALLS])
def test_the_operator_chart_renders_what_each_kustomize_install_renders(install: Install) -> None:
    expected = by_identity(
        [comparable(o) for o in render(install) if o["kind"] not in NOT_IN_THE_OPERATOR_CHART]
    )
    values, files = equivalent_values(install)
    rendered = by_identity([comparable(o) for o in operator_objects(*values, files=files)])
    assert sorted(rendered) == sorted(expected)
    for key, obj in expected.items():
        assert rendered[key] == obj, key


@pytest.mark.parametrize(
    "install", [Install("cluster"), Install("production", ("size-large",))], ids=lambda i: i.id
)
def test_helm_3_renders_the_same_objects_as_helm_4(install: Install) -> None:
    values, files = equivalent_values(install)
    helm4 = operator_objects(*values, files=files)
    helm3 = operator_objects(*values, files=files, version=HELM3_VERSION)
    # Helm 3 and Helm 4 sort the objects of one kind differently; the objects are the same.
    assert by_identity([without_helm_labels(o) for o in helm3]) == by_identity(
        [without_helm_labels(o) for o in helm4]
    )


def test_the_crds_chart_holds_the_generated_crds() -> None:
    generated = [
        yaml.safe_load(p.read_text())
        for p in sorted((REPO / "crds" / "manifests").glob("*.moorage.dev.yaml"))
    ]
    rendered = template(CRDS_CHART)
    for crd in rendered:
        without_helm_labels(crd)
        assert crd["metadata"].pop("annotations") == {"helm.sh/resource-policy": "keep"}
        if not crd["metadata"]["labels"]:
            del crd["metadata"]["labels"]
    assert by_identity(rendered) == by_identity(generated)


def test_the_crds_chart_lets_helm_delete_the_crds_only_when_told() -> None:
    (crd, *_) = template(CRDS_CHART, {"keep": False})
    assert "annotations" not in crd["metadata"]


@HELM_VERSIONS
def test_both_charts_are_lint_clean(version: str) -> None:
    for chart in (CRDS_CHART, OPERATOR_CHART):
        out = run("lint", "--strict", str(chart), version=version)
        assert "0 chart(s) failed" in out
        assert "[WARNING]" not in out, out
        assert "[ERROR]" not in out, out
    for values_file in ("values-medium.yaml", "values-large.yaml"):
        values = str(OPERATOR_CHART / values_file)
        out = run("lint", "--strict", str(OPERATOR_CHART), "-f", values, version=version)
        assert "[WARNING]" not in out, out
        assert "[ERROR]" not in out, out


# -- the values' schema ------------------------------------------------------------------------------


@HELM_VERSIONS
@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"operator": {"rbac": {"scope": "galaxy"}}}, "operator.rbac.scope"),
        ({"operator": {"rbac": {"scope": "namespace"}}}, "operator.rbac.allowedNamespaces"),
        ({"operator": {"rbac": {"allowedNamespaces": ["Not_A_Name"]}}}, "allowedNamespaces"),
        ({"operator": {"replicaCount": 0}}, "operator.replicaCount"),
        ({"operator": {"reconcileConcurrency": "many"}}, "operator.reconcileConcurrency"),
        ({"operator": {"resyncPeriod": "daily"}}, "operator.resyncPeriod"),
        ({"operator": {"logFormat": "xml"}}, "operator.logFormat"),
        ({"operator": {"image": {"digest": "latest"}}}, "operator.image.digest"),
        ({"operator": {"proxyRunnerImage": {"pullPolicy": "Sometimes"}}}, "pullPolicy"),
        ({"webhook": {"failurePolicy": "Never"}}, "webhook.failurePolicy"),
        ({"metrics": {"port": 70000}}, "metrics.port"),
        ({"networkPolicy": {"egress": {"cidrs": ["everywhere"]}}}, "cidrs"),
        ({"networkPolicy": {"egress": {"cidrs": []}}}, "networkPolicy.egress.cidrs"),
        ({"prometheusRule": {"thresholds": {"proxyServerErrors": {"percent": 120}}}}, "percent"),
        ({"prometheusRule": {"thresholds": {"webhookDown": {"for": "5 minutes"}}}}, "for"),
        ({"prometheusRule": {"thresholds": {"reconcileStale": {"minutes": 10}}}}, "minutes"),
        ({"operator": {"replicas": 2}}, "replicas"),
    ],
    ids=[
        "unknown-scope",
        "namespace-scope-without-namespaces",
        "bad-namespace-name",
        "no-replicas",
        "concurrency-not-a-number",
        "resync-not-a-duration",
        "unknown-log-format",
        "digest-not-sha256",
        "unknown-pull-policy",
        "unknown-failure-policy",
        "port-out-of-range",
        "cidr-not-a-cidr",
        "no-apiserver-cidr",
        "percent-over-100",
        "pending-not-a-duration",
        "stale-within-the-window",
        "unknown-key",
    ],
)
def test_a_wrong_value_is_refused_with_the_field_named(
    values: dict[str, Any], field: str, version: str
) -> None:
    stderr = refusal(values, version=version)
    assert "schema" in stderr, stderr
    assert mentions_field(stderr, field), stderr


def test_the_galaxy_scope_is_refused_naming_the_allowed_scopes() -> None:
    stderr = refusal({"operator": {"rbac": {"scope": "galaxy"}}})
    assert mentions_field(stderr, "operator.rbac.scope"), stderr
    assert "cluster" in stderr, stderr
    assert "namespace" in stderr, stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"certManager": {"enabled": False}},
            "webhook TLS: set certManager.enabled=true",
        ),
        (
            {"certManager": {"enabled": False}, "tls": {"secretName": "mine"}},
            "tls.caBundle: set it",
        ),
        (
            {
                "operator": {
                    "rbac": {"scope": "namespace", "allowedNamespaces": ["team-a"]},
                    "watchNamespaces": ["team-a", "team-c"],
                }
            },
            'operator.watchNamespaces: "team-c" is not in operator.rbac.allowedNamespaces',
        ),
    ],
    ids=["no-tls-source", "secret-without-ca", "watching-a-namespace-not-allowed"],
)
def test_a_rule_across_values_fails_the_install_with_a_clear_message(
    values: dict[str, Any], message: str
) -> None:
    assert message in refusal(values)


def _models(model: type[Values]) -> Iterator[type[Values]]:
    yield model
    for field in model.model_fields.values():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, Values):
            yield from _models(annotation)


def _documented_keys(text: str) -> list[str]:
    """Keys of `values.yaml` lines that follow a comment line (at any depth)."""
    lines = text.splitlines()
    return [
        line.split(":", 1)[0].strip()
        for previous, line in itertools.pairwise(lines)
        if previous.lstrip().startswith("#") and re.match(r"^\s*[A-Za-z]\w*:", line)
    ]


@pytest.mark.parametrize(
    ("chart", "model"),
    [(OPERATOR_CHART, OperatorChartValues), (CRDS_CHART, CrdsChartValues)],
    ids=["operator", "crds"],
)
def test_helm_show_values_documents_every_value_in_a_comment(
    chart: Any, model: type[Values]
) -> None:
    shown = run("show", "values", str(chart))
    assert yaml.safe_load(shown) == model().model_dump(by_alias=True)
    documented = _documented_keys(shown)
    for values_model in _models(model):
        for name, field in values_model.model_fields.items():
            assert field.description, f"{values_model.__name__}.{name} has no docstring"
            assert (field.alias or name) in documented, f"{field.alias} has no comment"


# -- what the values say ------------------------------------------------------------------------------


def test_namespace_scope_binds_the_clusterrole_in_each_allowed_namespace_only() -> None:
    objects = operator_objects(
        {"operator": {"rbac": {"scope": "namespace", "allowedNamespaces": ["a", "b", "c"]}}},
        namespace="platform",
    )
    bindings = [o for o in objects if o["kind"] == "RoleBinding"]
    to_clusterrole = sorted(
        b["metadata"]["namespace"] for b in bindings if b["roleRef"]["kind"] == "ClusterRole"
    )
    assert to_clusterrole == ["a", "b", "c"]
    assert all(
        b["subjects"]
        == [{"kind": "ServiceAccount", "name": "moorage-operator", "namespace": "platform"}]
        for b in bindings
    )
    leader = find(objects, "Role", "moorage-operator-leader-election", "platform")
    assert leader["rules"][1]["resourceNames"] == ["moorage-operator"]
    assert find(objects, "ClusterRole", "moorage-operator")
    assert {o["metadata"]["name"] for o in objects if o["kind"] == "ClusterRoleBinding"} == {
        "moorage-webhook",
        "moorage-proxyrunner-mcptenants",
    }
    readers = find(objects, "ClusterRoleBinding", "moorage-proxyrunner-mcptenants")
    assert [s["name"] for s in readers["subjects"]] == [
        f"system:serviceaccounts:{n}" for n in ("a", "b", "c")
    ]
    operator = container(find(objects, "Deployment", "moorage-operator"), "operator")
    assert env(operator)["WATCH_NAMESPACES"]["value"] == "a,b,c"


def test_namespace_scope_may_watch_fewer_namespaces_than_allowed() -> None:
    objects = operator_objects(
        {
            "operator": {
                "rbac": {"scope": "namespace", "allowedNamespaces": ["a", "b"]},
                "watchNamespaces": ["b"],
            }
        }
    )
    operator = container(find(objects, "Deployment", "moorage-operator"), "operator")
    assert env(operator)["WATCH_NAMESPACES"]["value"] == "b"


@pytest.mark.parametrize(
    ("replicas", "budget"), [(1, False), (2, True), (3, True)], ids=["one", "two", "three"]
)
def test_a_disruption_budget_is_rendered_only_above_one_replica(
    replicas: int, budget: bool
) -> None:
    objects = operator_objects(
        {"operator": {"replicaCount": replicas}, "webhook": {"replicaCount": replicas}}
    )
    budgets = {o["metadata"]["name"] for o in objects if o["kind"] == "PodDisruptionBudget"}
    assert budgets == ({"moorage-operator", "moorage-webhook"} if budget else set())
    deployment = find(objects, "Deployment", "moorage-operator")
    assert deployment["spec"]["replicas"] == replicas
    assert env(container(deployment, "operator"))["LEADER_ELECTION"]["value"] == "true"


def test_images_take_tag_digest_and_pull_policy_and_default_to_the_app_version() -> None:
    objects = operator_objects(
        {
            "imagePullSecrets": [{"name": "registry"}],
            "operator": {
                "image": {"repository": "r.example/op", "digest": DIGEST, "tag": "ignored"},
                "proxyRunnerImage": {"repository": "r.example/pr", "tag": "9.9.9"},
                "registryApiImage": {"repository": "r.example/api"},
            },
            "webhook": {"image": {"repository": "r.example/wh", "pullPolicy": "Always"}},
        }
    )
    version = yaml.safe_load((OPERATOR_CHART / "Chart.yaml").read_text())["appVersion"]
    operator_deployment = find(objects, "Deployment", "moorage-operator")
    operator = container(operator_deployment, "operator")
    assert operator["image"] == f"r.example/op@{DIGEST}"
    assert operator["imagePullPolicy"] == "IfNotPresent"
    assert env(operator)["PROXYRUNNER_IMAGE"]["value"] == "r.example/pr:9.9.9"
    assert env(operator)["REGISTRY_API_IMAGE"]["value"] == f"r.example/api:{version}"
    webhook_deployment = find(objects, "Deployment", "moorage-webhook")
    webhook = container(webhook_deployment, "webhook")
    assert webhook["image"] == f"r.example/wh:{version}"
    assert webhook["imagePullPolicy"] == "Always"
    for deployment in (operator_deployment, webhook_deployment):
        assert deployment["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "registry"}]


def test_operator_settings_reach_its_environment() -> None:
    objects = operator_objects(
        {
            "clusterDomain": "corp.internal",
            "registry": {"allowLocalSources": True},
            "metrics": {"port": 9000},
            "operator": {
                "watchNamespaces": ["x", "y"],
                "logFormat": "console",
                "logLevel": "debug",
                "reconcileConcurrency": 12,
                "resyncPeriod": "1h30m",
            },
        }
    )
    operator = env(container(find(objects, "Deployment", "moorage-operator"), "operator"))
    settings = {name: e.get("value") for name, e in operator.items()}
    assert settings["WATCH_NAMESPACES"] == "x,y"
    assert settings["LOG_FORMAT"] == "console"
    assert settings["LOG_LEVEL"] == "debug"
    assert settings["RECONCILE_CONCURRENCY"] == "12"
    assert settings["RESYNC_PERIOD"] == "1h30m"
    assert settings["METRICS_BIND"] == ":9000"
    assert settings["CLUSTER_DOMAIN"] == "corp.internal"
    assert settings["REGISTRY_ALLOW_LOCAL_SOURCES"] == "true"
    webhook = container(find(objects, "Deployment", "moorage-webhook"), "webhook")
    assert env(webhook)["REGISTRY_ALLOW_LOCAL_SOURCES"]["value"] == "true"
    assert "--metrics-bind=:9000" in webhook["args"]
    certificate = find(objects, "Certificate", "moorage-webhook")
    assert "moorage-webhook.moorage-system.svc.corp.internal" in certificate["spec"]["dnsNames"]
    for name in ("moorage-operator-metrics", "moorage-webhook"):
        ports = {p["name"]: p["port"] for p in find(objects, "Service", name)["spec"]["ports"]}
        assert ports["metrics"] == 9000


def test_a_secret_provisioned_in_advance_replaces_cert_manager() -> None:
    objects = operator_objects(TLS_SECRET, {"webhook": {"failurePolicy": "Ignore"}})
    assert not [o for o in objects if o["kind"] in ("Issuer", "Certificate")]
    deployment = find(objects, "Deployment", "moorage-webhook")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "mine"
    configuration = find(objects, "ValidatingWebhookConfiguration", "moorage-webhook")
    assert "annotations" not in configuration["metadata"]
    for hook in configuration["webhooks"]:
        assert hook["clientConfig"]["caBundle"] == "Q0E="
        assert hook["failurePolicy"] == "Ignore"


def test_scheduling_and_security_values_reach_both_pods() -> None:
    placement = {
        "nodeSelector": {"pool": "system"},
        "tolerations": [{"key": "system", "operator": "Exists"}],
        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "topologySpreadConstraints": [
            {"maxSkew": 2, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}
        ],
        "priorityClassName": "system-cluster-critical",
        "podSecurityContext": {"runAsNonRoot": True, "runAsUser": 1000},
        "securityContext": {"readOnlyRootFilesystem": True},
        "resources": {"requests": {"cpu": "2"}},
    }
    objects = operator_objects({"operator": {**placement, "replicaCount": 2}, "webhook": placement})
    for name, container_name in (("moorage-operator", "operator"), ("moorage-webhook", "webhook")):
        deployment = find(objects, "Deployment", name)
        pod = deployment["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == placement["nodeSelector"]
        assert pod["tolerations"] == placement["tolerations"]
        assert pod["affinity"] == placement["affinity"]
        assert pod["topologySpreadConstraints"] == placement["topologySpreadConstraints"]
        assert pod["priorityClassName"] == "system-cluster-critical"
        # Helm merges maps given with the defaults (a key is removed by setting it to null).
        assert pod["securityContext"]["runAsUser"] == 1000
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        spec = container(deployment, container_name)
        assert spec["securityContext"]["readOnlyRootFilesystem"] is True
        assert spec["resources"]["requests"]["cpu"] == "2"


def test_alert_thresholds_change_the_rules_and_their_words() -> None:
    thresholds = {
        "operatorDown": {"for": "20m"},
        "operatorNoLeader": {"for": "90s"},
        "reconcileErrorsHigh": {"percent": 20, "for": "1h"},
        "reconcileStale": {"minutes": 30},
        "reconcileStuck": {"minutes": 7, "for": "2m"},
        "reconcileLatencyHigh": {"seconds": 2.5, "for": "30m"},
        "webhookDown": {"for": "1m"},
        "webhookErrors": {"for": "3m"},
        "webhookRejectionsHigh": {"percent": 40, "count": 9, "for": "20m"},
        "webhookLatencyHigh": {"seconds": 0.5, "for": "4m"},
        "proxyServerErrors": {"percent": 2, "for": "6m"},
        "proxySessionStoreDown": {"for": "8m"},
    }
    objects = operator_objects({"prometheusRule": {"enabled": True, "thresholds": thresholds}})
    rules = {
        r["alert"]: r
        for group in find(objects, "PrometheusRule", "moorage")["spec"]["groups"]
        for r in group["rules"]
    }
    pending = {alert: rule["for"] for alert, rule in rules.items()}
    assert pending == {
        "MoorageOperatorDown": "20m",
        "MoorageOperatorNoLeader": "90s",
        "MoorageReconcileErrorsHigh": "1h",
        "MoorageReconcileStale": "20m",  # 30 quiet minutes: a 10m window, then 20m pending
        "MoorageReconcileStuck": "2m",
        "MoorageReconcileLatencyHigh": "30m",
        "MoorageWebhookDown": "1m",
        "MoorageWebhookErrors": "3m",
        "MoorageWebhookRejectionsHigh": "20m",
        "MoorageWebhookLatencyHigh": "4m",
        "MoorageProxyServerErrors": "6m",
        "MoorageProxySessionStoreDown": "8m",
    }
    errors = rules["MoorageReconcileErrorsHigh"]
    assert errors["expr"].rstrip().endswith("> 0.2")
    description = errors["annotations"]["description"]
    assert description.startswith("More than 20 % of the")
    assert "have failed for 1 hour." in description
    assert "{{ $labels.controller }}" in description
    stale = rules["MoorageReconcileStale"]["annotations"]["summary"]
    assert stale.endswith("nothing was reconciled for 30 minutes.")
    assert rules["MoorageReconcileStuck"]["expr"].endswith("> 420")
    assert "more than 7 minutes" in rules["MoorageReconcileStuck"]["annotations"]["description"]
    latency = rules["MoorageReconcileLatencyHigh"]
    assert latency["expr"].rstrip().endswith("> 2.5")
    assert "exceeded 2.5 s for 30 minutes." in latency["annotations"]["description"]
    rejections = rules["MoorageWebhookRejectionsHigh"]["expr"]
    assert "> 0.4" in rejections
    assert rejections.rstrip().endswith("> 9")
    assert rules["MoorageWebhookLatencyHigh"]["expr"].rstrip().endswith("> 0.5")
    assert rules["MoorageProxyServerErrors"]["expr"].rstrip().endswith("> 0.02")
    assert (
        "more than 2 % of MCP requests"
        in (rules["MoorageProxyServerErrors"]["annotations"]["description"])
    )
    store = rules["MoorageProxySessionStoreDown"]["annotations"]
    assert store["description"].startswith(
        "The proxy's Redis operations have kept failing for 8 minutes."
    )
    assert "{{ $labels.namespace }}/{{ $labels.pod }}" in store["summary"]


def test_network_policy_cidrs_and_the_dashboard_label_are_values() -> None:
    objects = operator_objects(
        {
            "networkPolicy": {
                "enabled": True,
                "egress": {"cidrs": ["10.0.0.1/32", "10.0.0.2/32"], "registrySourcesCidrs": []},
                "ingress": {"webhookCidrs": ["10.0.0.0/24"], "metricsNamespace": "observability"},
            },
            "grafanaDashboard": {"enabled": True, "label": "dashboards"},
        }
    )
    apiserver = find(objects, "NetworkPolicy", "moorage-apiserver-egress")
    assert [t["ipBlock"]["cidr"] for t in apiserver["spec"]["egress"][0]["to"]] == [
        "10.0.0.1/32",
        "10.0.0.2/32",
    ]
    names = {o["metadata"]["name"] for o in objects if o["kind"] == "NetworkPolicy"}
    assert "moorage-registry-sources-egress" not in names
    webhook = find(objects, "NetworkPolicy", "moorage-webhook-ingress")
    assert webhook["spec"]["ingress"][0]["from"] == [{"ipBlock": {"cidr": "10.0.0.0/24"}}]
    metrics = find(objects, "NetworkPolicy", "moorage-metrics-ingress")
    selector = metrics["spec"]["ingress"][0]["from"][0]["namespaceSelector"]
    assert selector == {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}
    dashboard = find(objects, "ConfigMap", "moorage-dashboard")
    assert dashboard["metadata"]["labels"]["dashboards"] == "1"


def test_optional_parts_are_off_by_default() -> None:
    kinds = {o["kind"] for o in operator_objects()}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"}
    assert "NetworkPolicy" not in kinds
    assert "PodDisruptionBudget" in kinds  # the webhook's two replicas
