"""The monitoring component against the code that exposes the metrics.

Every alert and dashboard query must parse as PromQL and name only series the components really
expose (read from the collectors their sources define), with label matchers those series carry. Scrape objects must select what the
manifests and the operator create; the docs must list every metric and alert.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import promql_parser
import pytest
from testkit.kustomize import REPO, Install, Obj, find, of_kind, render

from moorage_api.constants import (
    COMPONENT_PROXY_RUNNER,
    COMPONENT_REGISTRY_API,
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    LABEL_MCPREGISTRY,
    LABEL_MCPSERVER,
    MANAGED_BY,
)
from moorage_operator.__main__ import LEASE_NAME

DOCS = REPO / "docs" / "operations.md"
SOURCES = ("operator/src", "webhook/src", "proxyrunner/src", "registryserver/src", "core/src")
# Labels Prometheus adds to every scraped series (target labels), and the proxy runner's
# MCPServer label the PodMonitor copies from the pod (podTargetLabels, sanitised).
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "endpoint", "container"}
MCPSERVER_TARGET_LABEL = re.sub(r"[^a-zA-Z0-9_]", "_", LABEL_MCPSERVER)


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    """As documented and queried: counters with `_total`."""
    kind: str
    labels: frozenset[str]

    def series(self) -> set[str]:
        if self.kind == "histogram":
            return {f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count"}
        return {self.name}


def families() -> dict[str, Family]:
    """Every moorage_ family defined anywhere in the components' sources.

    Read from the source (each `Counter("moorage_...", help, [labels])` call and its kin), so
    that a metric added to any component, in any module, is checked here without naming it.
    """
    found: dict[str, Family] = {}
    for folder in SOURCES:
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                family = family_of(node)
                if family is not None:
                    found[family.name] = family
    assert found, "no collectors found"
    return found


def family_of(node: ast.AST) -> Family | None:
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
    kind = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram"}.get(called)
    if kind is None or not node.args:
        return None
    first = node.args[0]
    if not (isinstance(first, ast.Constant) and str(first.value).startswith("moorage_")):
        return None
    name = str(first.value)
    if kind == "counter":  # prometheus_client exposes counters as <name>_total either way
        name = name.removesuffix("_total") + "_total"
    labels_node: ast.expr | None = node.args[2] if len(node.args) > 2 else None
    for keyword in node.keywords:
        if keyword.arg == "labelnames":
            labels_node = keyword.value
    labels: frozenset[str] = frozenset()
    if labels_node is not None:
        value = ast.literal_eval(labels_node)
        labels = frozenset(value)
    return Family(name, kind, labels)


FAMILIES = families()
SERIES = {s: f for f in FAMILIES.values() for s in f.series()}


@pytest.fixture(scope="module")
def monitoring() -> list[Obj]:
    return render(Install("cluster", ("monitoring",)))


def alert_rules(objects: list[Obj]) -> list[Obj]:
    rule = find(objects, "PrometheusRule", "moorage")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def dashboard(objects: list[Obj]) -> dict[str, Any]:
    configmap = find(objects, "ConfigMap", "moorage-dashboard")
    loaded: dict[str, Any] = json.loads(configmap["data"]["moorage.json"])
    return loaded


def dashboard_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def selectors(node: Any) -> Iterator[Any]:
    """Every VectorSelector in a parsed PromQL expression."""
    if isinstance(node, promql_parser.VectorSelector):
        yield node
    elif isinstance(node, promql_parser.MatrixSelector):
        yield node.vector_selector
    elif isinstance(node, promql_parser.BinaryExpr):
        yield from selectors(node.lhs)
        yield from selectors(node.rhs)
    elif isinstance(node, promql_parser.Call):
        for arg in node.args:
            yield from selectors(arg)
    elif isinstance(node, promql_parser.AggregateExpr):
        yield from selectors(node.expr)
        if node.param is not None:
            yield from selectors(node.param)
    elif isinstance(
        node, (promql_parser.ParenExpr, promql_parser.UnaryExpr, promql_parser.SubqueryExpr)
    ):
        yield from selectors(node.expr)


def check_query(expr: str) -> None:
    """Parses, and names only exposed moorage_ series with labels they carry."""
    # Grafana's interval variable is not PromQL; it stands for a range.
    parsed = promql_parser.parse(expr.replace("$__rate_interval", "5m"))
    names = [s.name for s in selectors(parsed)]
    assert names, f"no series in {expr!r}"
    for selector in selectors(parsed):
        if not selector.name.startswith("moorage_"):
            continue
        assert selector.name in SERIES, f"{selector.name} is not exposed by any component"
        family = SERIES[selector.name]
        allowed = family.labels | TARGET_LABELS | {MCPSERVER_TARGET_LABEL}
        if family.kind == "histogram":
            allowed |= {"le"}
        for matcher in selector.matchers.matchers:
            assert matcher.name in allowed, f"{selector.name} has no label {matcher.name}"


def test_the_metric_families_were_found() -> None:
    for name in (
        "moorage_controller_reconcile_total",
        "moorage_controller_reconcile_errors_total",
        "moorage_controller_reconcile_time_seconds",
        "moorage_workqueue_depth",
        "moorage_leader_election_status",
        "moorage_webhook_requests_total",
        "moorage_webhook_request_duration_seconds",
        "moorage_proxy_requests_total",
    ):
        assert name in FAMILIES, name
    assert FAMILIES["moorage_webhook_requests_total"].labels == {
        "kind",
        "operation",
        "allowed",
        "code",
    }
    assert FAMILIES["moorage_proxy_requests_total"].labels == {"method", "status"}


def test_every_alert_is_complete(monitoring: list[Obj]) -> None:
    rules = alert_rules(monitoring)
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]
        assert re.fullmatch(r"\d+m", rule["for"]), rule["alert"]


def test_every_alert_query_parses_and_names_real_series(monitoring: list[Obj]) -> None:
    for rule in alert_rules(monitoring):
        check_query(rule["expr"])


@pytest.mark.parametrize(
    ("needle", "why"),
    [
        ("moorage_controller_reconcile_errors_total", "reconcile error rate"),
        ("moorage_workqueue_longest_running_processor_seconds", "staleness: stuck worker"),
        ("moorage_workqueue_depth", "staleness: queued work, no reconcile"),
        ("moorage_controller_reconcile_time_seconds_bucket", "p95 reconcile latency"),
        ('moorage_webhook_requests_total{allowed="false"}', "webhook rejections"),
        ('moorage_webhook_requests_total{allowed="error"}', "webhook errors"),
        ('moorage_proxy_requests_total{status=~"5.."}', "proxy 5xx"),
        (f'moorage_leader_election_status{{name="{LEASE_NAME}"}}', "no leader"),
    ],
)
def test_alerts_cover(monitoring: list[Obj], needle: str, why: str) -> None:
    exprs = " ".join(r["expr"] for r in alert_rules(monitoring))
    assert needle in exprs, why


def test_the_query_checker_rejects_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="parenthesis"):
        check_query("sum(rate(moorage_workqueue_depth[5m])")
    with pytest.raises(AssertionError, match="not exposed"):
        check_query("moorage_controller_reconcile_failures_total")
    with pytest.raises(AssertionError, match="no label"):
        check_query('moorage_proxy_requests_total{code="500"}')
    check_query('sum by (le) (rate(moorage_webhook_request_duration_seconds_bucket{le="1"}[5m]))')


def test_alert_jobs_are_the_scraped_services(monitoring: list[Obj]) -> None:
    services = of_kind(monitoring, "Service")
    monitors = of_kind(monitoring, "ServiceMonitor")
    jobs: set[str] = set()
    for monitor in monitors:
        selected = [
            s
            for s in services
            if all(
                s["metadata"]["labels"].get(k) == v
                for k, v in monitor["spec"]["selector"]["matchLabels"].items()
            )
        ]
        assert len(selected) == 1, monitor["metadata"]["name"]
        ports = {p["name"] for p in selected[0]["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in ports
            assert endpoint["scheme"] == "https"
        # prometheus-operator names the job after the Service.
        jobs.add(selected[0]["metadata"]["name"])
    used = set()
    for rule in alert_rules(monitoring):
        used |= set(re.findall(r'job="([^"]+)"', rule["expr"]))
    assert used
    assert used <= jobs


def test_webhook_metrics_are_scraped_with_its_certificate_verified(
    monitoring: list[Obj],
) -> None:
    monitor = find(monitoring, "ServiceMonitor", "moorage-webhook")
    certificate = find(monitoring, "Certificate", "moorage-webhook")
    tls = monitor["spec"]["endpoints"][0]["tlsConfig"]
    assert tls["ca"]["secret"]["name"] == certificate["spec"]["secretName"]
    assert tls["serverName"] in certificate["spec"]["dnsNames"]
    assert "insecureSkipVerify" not in tls


def test_proxy_runners_and_registry_apis_are_scraped_by_the_labels_the_operator_sets(
    monitoring: list[Obj],
) -> None:
    monitor = find(monitoring, "PodMonitor", "moorage-proxy-runners")
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    assert monitor["spec"]["selector"]["matchLabels"] == {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_COMPONENT: COMPONENT_PROXY_RUNNER,
    }
    assert monitor["spec"]["podTargetLabels"] == [LABEL_MCPSERVER]
    registries = find(monitoring, "PodMonitor", "moorage-registry-apis")
    assert registries["spec"]["selector"]["matchLabels"] == {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_COMPONENT: COMPONENT_REGISTRY_API,
    }
    assert registries["spec"]["podTargetLabels"] == [LABEL_MCPREGISTRY]


def test_dashboard_is_discoverable_and_well_formed(monitoring: list[Obj]) -> None:
    configmap = find(monitoring, "ConfigMap", "moorage-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = dashboard(monitoring)
    assert board["uid"] == "moorage-overview"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]


def test_every_dashboard_query_parses_and_names_real_series(monitoring: list[Obj]) -> None:
    for title, expr in dashboard_queries(dashboard(monitoring)):
        try:
            check_query(expr)
        except (AssertionError, ValueError) as exc:
            raise AssertionError(f"panel {title!r}: {exc}") from exc


def test_dashboard_shows_the_alerted_metrics(monitoring: list[Obj]) -> None:
    queries = " ".join(expr for _, expr in dashboard_queries(dashboard(monitoring)))
    for name in (
        "moorage_controller_reconcile_total",
        "moorage_controller_reconcile_errors_total",
        "moorage_controller_reconcile_time_seconds_bucket",
        "moorage_workqueue_depth",
        "moorage_workqueue_longest_running_processor_seconds",
        "moorage_leader_election_status",
        "moorage_webhook_requests_total",
        "moorage_webhook_request_duration_seconds_bucket",
        "moorage_proxy_requests_total",
        "moorage_proxy_session_store_errors_total",
        "moorage_proxy_rate_limit_store_errors_total",
    ):
        assert name in queries, name


def test_the_docs_list_every_metric_and_alert(monitoring: list[Obj]) -> None:
    docs = DOCS.read_text()
    table = {m.group(1) for m in re.finditer(r"^\| `(moorage_[a-z0-9_]+)`", docs, re.MULTILINE)}
    missing = sorted(set(FAMILIES) - table)
    assert not missing, f"metrics missing from the table in docs/operations.md: {missing}"
    unknown = sorted(table - set(FAMILIES))
    assert not unknown, f"docs/operations.md lists metrics nothing exposes: {unknown}"
    for rule in alert_rules(monitoring):
        assert f"`{rule['alert']}`" in docs, rule["alert"]
