"""Scrape configurations from our monitors: what they select, how they label, TLS and tokens.

The relabelling is checked by running it: `relabel` below applies Prometheus's relabel semantics
(keep, drop, replace; anchored regexes; `${1}`; an empty result deletes the label) to the
discovery labels of our own Services and of pods as the operator labels them. The integration test
runs the same jobs in a real Prometheus.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from testkit.kustomize import DEPLOY

from moorage_api.constants import (
    COMPONENT_PROXY_RUNNER,
    COMPONENT_REGISTRY_API,
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    LABEL_MCPREGISTRY,
    LABEL_MCPSERVER,
    MANAGED_BY,
)
from moorage_dev import processes, prometheus
from moorage_dev.scrapeconfigs import (
    KeyRef,
    ScrapeConfigError,
    ScrapeSettings,
    StaticTarget,
    build_prometheus_config,
    build_scrape_configs,
    endpoint_discovery_labels,
    pod_discovery_labels,
    sanitize_label_name,
)

KUBECONFIG = Path("/state/prometheus.kubeconfig")
WEBHOOK_CA_FILE = Path("/state/webhook-ca.crt")
SETTINGS = ScrapeSettings(kubeconfig=KUBECONFIG, files={prometheus.WEBHOOK_CA: WEBHOOK_CA_FILE})


def relabel(
    labels: Mapping[str, str], rules: Sequence[Mapping[str, Any]], *, job_name: str
) -> dict[str, str] | None:
    """The target labels Prometheus keeps after `rules`, or None when the target is dropped."""
    current = {"job": job_name, **labels}
    for rule in rules:
        action = rule.get("action", "replace")
        value = rule.get("separator", ";").join(
            current.get(name, "") for name in rule.get("source_labels", [])
        )
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if action == "keep" and match is None:
            return None
        if action == "drop" and match is not None:
            return None
        if action == "replace" and match is not None:
            template = re.sub(r"\$\{(\d+)\}|\$(\d+)", r"\\g<\1\2>", rule.get("replacement", "$1"))
            result = match.expand(template)
            if result:
                current[rule["target_label"]] = result
            else:
                current.pop(rule["target_label"], None)
    kept = {k: v for k, v in current.items() if not k.startswith("__")}
    kept.setdefault("instance", labels.get("__address__", ""))
    return kept


def _jobs(settings: ScrapeSettings = SETTINGS) -> dict[str, dict[str, Any]]:
    return {
        job["job_name"]: job
        for job in build_scrape_configs(prometheus.load_monitors(), settings=settings)
    }


def _service(path: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "base" / path).read_text())
    return doc


OPERATOR_JOB = "serviceMonitor/moorage-system/moorage-operator/0"
WEBHOOK_JOB = "serviceMonitor/moorage-system/moorage-webhook/0"
PROXY_JOB = "podMonitor/moorage-system/moorage-proxy-runners/0"
REGISTRY_JOB = "podMonitor/moorage-system/moorage-registry-apis/0"


def test_one_job_per_monitor_endpoint_named_as_prometheus_operator_names_them() -> None:
    assert list(_jobs()) == [OPERATOR_JOB, WEBHOOK_JOB, PROXY_JOB, REGISTRY_JOB]


@pytest.mark.parametrize(
    ("job", "role", "namespaces"),
    [
        (OPERATOR_JOB, "endpoints", {"names": ["moorage-system"]}),
        (WEBHOOK_JOB, "endpoints", {"names": ["moorage-system"]}),
        (PROXY_JOB, "pod", None),
        (REGISTRY_JOB, "pod", None),
    ],
    ids=["operator", "webhook", "proxy-runners", "registry-apis"],
)
def test_discovery_asks_the_apiserver_of_the_kubeconfig(
    job: str, role: str, namespaces: dict[str, list[str]] | None
) -> None:
    (discovery,) = _jobs()[job]["kubernetes_sd_configs"]
    assert discovery["role"] == role
    assert discovery["kubeconfig_file"] == str(KUBECONFIG)
    assert discovery.get("namespaces") == namespaces


def test_operator_is_scraped_over_https_without_verifying_its_self_signed_certificate() -> None:
    job = _jobs()[OPERATOR_JOB]
    assert (job["scheme"], job["metrics_path"], job["scrape_interval"]) == (
        "https",
        "/metrics",
        "30s",
    )
    assert job["tls_config"] == {"insecure_skip_verify": True}
    assert "authorization" not in job


def test_webhook_certificate_is_verified_against_its_ca_as_its_service_name() -> None:
    job = _jobs()[WEBHOOK_JOB]
    assert job["scheme"] == "https"
    assert job["tls_config"] == {
        "server_name": "moorage-webhook.moorage-system.svc",
        "ca_file": str(WEBHOOK_CA_FILE),
    }


def test_a_referenced_secret_without_a_file_is_an_error() -> None:
    with pytest.raises(ScrapeConfigError, match=r"moorage-system/moorage-webhook-tls key ca\.crt"):
        _jobs(ScrapeSettings(kubeconfig=KUBECONFIG))


def test_proxy_runners_and_registry_apis_are_scraped_over_plain_http() -> None:
    jobs = _jobs()
    for name in (PROXY_JOB, REGISTRY_JOB):
        assert (jobs[name]["scheme"], jobs[name]["metrics_path"]) == ("http", "/metrics")
        assert "tls_config" not in jobs[name]


def _operator_pod_endpoint(port_name: str, **overrides: str) -> dict[str, str]:
    labels = endpoint_discovery_labels(
        _service("operator/service.yaml"),
        port_name=port_name,
        pod_name="moorage-operator-7d9f-a",
        container="operator",
    )
    return {"__address__": "10.244.1.4:8443", **labels, **overrides}


def test_operator_endpoint_gets_the_target_labels_the_alerts_use() -> None:
    job = _jobs()[OPERATOR_JOB]
    labels = relabel(
        _operator_pod_endpoint("metrics"), job["relabel_configs"], job_name=OPERATOR_JOB
    )
    assert labels == {
        "job": "moorage-operator-metrics",
        "namespace": "moorage-system",
        "service": "moorage-operator-metrics",
        "pod": "moorage-operator-7d9f-a",
        "container": "operator",
        "endpoint": "metrics",
        "instance": "10.244.1.4:8443",
    }


def test_webhook_endpoint_is_named_after_its_service_and_only_its_metrics_port_kept() -> None:
    job = _jobs()[WEBHOOK_JOB]
    service = _service("webhook/service.yaml")

    def endpoint(port: str) -> dict[str, str]:
        return {
            "__address__": "10.244.1.6:8443",
            **endpoint_discovery_labels(service, port_name=port, pod_name="moorage-webhook-5c4b-a"),
        }

    metrics = relabel(endpoint("metrics"), job["relabel_configs"], job_name=WEBHOOK_JOB)
    assert metrics is not None
    assert (metrics["job"], metrics["endpoint"]) == ("moorage-webhook", "metrics")
    assert relabel(endpoint("webhook"), job["relabel_configs"], job_name=WEBHOOK_JOB) is None


@pytest.mark.parametrize(
    "overrides",
    [
        {"__meta_kubernetes_endpoint_port_name": "https"},
        {"__meta_kubernetes_service_label_app_kubernetes_io_component": "webhook"},
        {
            "__meta_kubernetes_service_label_app_kubernetes_io_name": "",
            "__meta_kubernetes_service_labelpresent_app_kubernetes_io_name": "",
        },
        {"__meta_kubernetes_pod_phase": "Succeeded"},
    ],
    ids=["other-port", "other-component", "label-missing", "finished-pod"],
)
def test_operator_job_drops_what_its_monitor_does_not_select(overrides: dict[str, str]) -> None:
    job = _jobs()[OPERATOR_JOB]
    target = _operator_pod_endpoint("metrics", **overrides)
    assert relabel(target, job["relabel_configs"], job_name=OPERATOR_JOB) is None


def _proxy_pod(labels: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "time-proxy-6f7d-a", "namespace": "team-a", "labels": labels}}


PROXY_LABELS = {
    LABEL_MANAGED_BY: MANAGED_BY,
    LABEL_COMPONENT: COMPONENT_PROXY_RUNNER,
    LABEL_MCPSERVER: "time",
}


def test_proxy_runner_pod_in_any_namespace_is_labelled_with_its_mcpserver() -> None:
    job = _jobs()[PROXY_JOB]
    target = {
        "__address__": "10.244.1.9:8080",
        **pod_discovery_labels(_proxy_pod(PROXY_LABELS), container="proxy", port_name="http"),
    }
    assert relabel(target, job["relabel_configs"], job_name=PROXY_JOB) == {
        "job": "moorage-system/moorage-proxy-runners",
        "namespace": "team-a",
        "pod": "time-proxy-6f7d-a",
        "container": "proxy",
        sanitize_label_name(LABEL_MCPSERVER): "time",
        "instance": "10.244.1.9:8080",
    }


@pytest.mark.parametrize(
    "labels",
    [
        {**PROXY_LABELS, LABEL_COMPONENT: COMPONENT_REGISTRY_API},
        {k: v for k, v in PROXY_LABELS.items() if k != LABEL_MANAGED_BY},
        {**PROXY_LABELS, LABEL_MANAGED_BY: "helm"},
    ],
    ids=["registry-api-pod", "unmanaged", "managed-by-someone-else"],
)
def test_proxy_runner_job_leaves_other_pods_alone(labels: dict[str, str]) -> None:
    job = _jobs()[PROXY_JOB]
    target = {
        "__address__": "10.244.1.9:8080",
        **pod_discovery_labels(_proxy_pod(labels), container="proxy"),
    }
    assert relabel(target, job["relabel_configs"], job_name=PROXY_JOB) is None


def test_registry_api_pod_is_labelled_with_its_mcpregistry() -> None:
    job = _jobs()[REGISTRY_JOB]
    pod = _proxy_pod(
        {
            LABEL_MANAGED_BY: MANAGED_BY,
            LABEL_COMPONENT: COMPONENT_REGISTRY_API,
            LABEL_MCPREGISTRY: "catalogue",
        }
    )
    target = {"__address__": "10.244.1.10:8080", **pod_discovery_labels(pod, container="api")}
    labels = relabel(target, job["relabel_configs"], job_name=REGISTRY_JOB)
    assert labels is not None
    assert labels["job"] == "moorage-system/moorage-registry-apis"
    assert labels[sanitize_label_name(LABEL_MCPREGISTRY)] == "catalogue"


def _monitor(
    endpoint: dict[str, Any], *, spec: dict[str, Any] | None = None, kind: str = "ServiceMonitor"
) -> dict[str, Any]:
    endpoints = "endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints"
    return {
        "kind": kind,
        "metadata": {"name": "m", "namespace": "ns"},
        "spec": {"selector": {"matchLabels": {"app": "x"}}, endpoints: [endpoint], **(spec or {})},
    }


def test_static_targets_replace_discovery_and_relabel_the_same() -> None:
    operator_monitor = [
        m for m in prometheus.load_monitors() if m["metadata"]["name"] == "moorage-operator"
    ]
    target = StaticTarget(
        "127.0.0.1:18443",
        endpoint_discovery_labels(
            _service("operator/service.yaml"),
            port_name="metrics",
            pod_name="local",
            container="operator",
        ),
    )
    (job,) = build_scrape_configs(
        operator_monitor,
        settings=ScrapeSettings(
            static_targets={"moorage-system/moorage-operator": [target]}, interval="1s"
        ),
    )
    assert "kubernetes_sd_configs" not in job
    assert job["scrape_interval"] == "1s"
    (static,) = job["static_configs"]
    assert static["targets"] == ["127.0.0.1:18443"]
    labels = relabel(
        {"__address__": "127.0.0.1:18443", **static["labels"]},
        job["relabel_configs"],
        job_name=job["job_name"],
    )
    assert labels is not None
    assert labels["job"] == "moorage-operator-metrics"
    assert labels["endpoint"] == "metrics"


def test_discovery_without_a_kubeconfig_is_an_error() -> None:
    with pytest.raises(ScrapeConfigError, match="kubeconfig"):
        build_scrape_configs([_monitor({"port": "m"})], settings=ScrapeSettings())


@pytest.mark.parametrize(
    ("endpoint", "files", "token_file", "expected"),
    [
        (
            {"bearerTokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"},
            {},
            Path("/state/token"),
            {"type": "Bearer", "credentials_file": "/state/token"},
        ),
        (
            {"bearerTokenFile": "/etc/token"},
            {},
            None,
            {"type": "Bearer", "credentials_file": "/etc/token"},
        ),
        (
            {"bearerTokenSecret": {"name": "scraper", "key": "token"}},
            {KeyRef("secret", "ns", "scraper", "token"): Path("/state/scraper-token")},
            None,
            {"type": "Bearer", "credentials_file": "/state/scraper-token"},
        ),
        (
            {"authorization": {"type": "Bearer", "credentials": {"name": "s", "key": "t"}}},
            {KeyRef("secret", "ns", "s", "t"): Path("/state/t")},
            None,
            {"type": "Bearer", "credentials_file": "/state/t"},
        ),
    ],
    ids=["token-file-replaced", "token-file-kept", "token-secret", "authorization"],
)
def test_declared_tokens_are_read_from_files(
    endpoint: dict[str, Any],
    files: dict[KeyRef, Path],
    token_file: Path | None,
    expected: dict[str, str],
) -> None:
    settings = ScrapeSettings(kubeconfig=KUBECONFIG, files=files, token_file=token_file)
    (job,) = build_scrape_configs([_monitor({"port": "m", **endpoint})], settings=settings)
    assert job["authorization"] == expected


def test_tls_client_certificate_and_configmap_ca_come_from_files() -> None:
    tls = {
        "ca": {"configMap": {"name": "ca", "key": "ca.crt"}},
        "cert": {"secret": {"name": "client", "key": "tls.crt"}},
        "keySecret": {"name": "client", "key": "tls.key"},
    }
    files = {
        KeyRef("configmap", "ns", "ca", "ca.crt"): Path("/f/ca"),
        KeyRef("secret", "ns", "client", "tls.crt"): Path("/f/crt"),
        KeyRef("secret", "ns", "client", "tls.key"): Path("/f/key"),
    }
    settings = ScrapeSettings(kubeconfig=KUBECONFIG, files=files)
    (job,) = build_scrape_configs([_monitor({"port": "m", "tlsConfig": tls})], settings=settings)
    assert job["tls_config"] == {"ca_file": "/f/ca", "cert_file": "/f/crt", "key_file": "/f/key"}


@pytest.mark.parametrize(
    "monitor",
    [
        _monitor({"port": "m", "relabelings": [{"action": "drop"}]}),
        _monitor({"port": "m", "metricRelabelings": []}),
        _monitor({"targetPort": 8443}),
        _monitor({"port": "m", "tlsConfig": {"maxVersion": "TLS12"}}),
        _monitor({"port": "m"}, spec={"sampleLimit": 100}),
    ],
    ids=["relabelings", "metric-relabelings", "target-port", "tls-version", "sample-limit"],
)
def test_a_field_not_translated_is_refused_rather_than_dropped(monitor: dict[str, Any]) -> None:
    with pytest.raises(ScrapeConfigError, match="not translated"):
        build_scrape_configs([monitor], settings=SETTINGS)


@pytest.mark.parametrize(
    ("expressions", "labels", "kept"),
    [
        ([{"key": "tier", "operator": "In", "values": ["a", "b"]}], {"tier": "b"}, True),
        ([{"key": "tier", "operator": "In", "values": ["a", "b"]}], {"tier": "c"}, False),
        ([{"key": "tier", "operator": "NotIn", "values": ["a"]}], {"tier": "c"}, True),
        ([{"key": "tier", "operator": "NotIn", "values": ["a"]}], {"tier": "a"}, False),
        ([{"key": "tier", "operator": "Exists"}], {"tier": ""}, True),
        ([{"key": "tier", "operator": "Exists"}], {}, False),
        ([{"key": "tier", "operator": "DoesNotExist"}], {}, True),
        ([{"key": "tier", "operator": "DoesNotExist"}], {"tier": "a"}, False),
    ],
    ids=["in", "not-in-set", "notin", "notin-listed", "exists-empty", "exists-absent",
         "doesnotexist", "doesnotexist-present"],
)  # fmt: skip
def test_match_expressions_select_as_kubernetes_does(
    expressions: list[dict[str, Any]], labels: dict[str, str], kept: bool
) -> None:
    monitor = _monitor({}, spec={"selector": {"matchExpressions": expressions}}, kind="PodMonitor")
    monitor["spec"].pop("podMetricsEndpoints")
    monitor["spec"]["podMetricsEndpoints"] = [{}]
    (job,) = build_scrape_configs([monitor], settings=SETTINGS)
    pod = {"metadata": {"name": "p", "namespace": "ns", "labels": labels}}
    target = {"__address__": "10.0.0.1:80", **pod_discovery_labels(pod, container="c")}
    assert (relabel(target, job["relabel_configs"], job_name=job["job_name"]) is not None) == kept


def test_namespace_selector_match_names_limits_discovery() -> None:
    monitor = _monitor({"port": "m"}, spec={"namespaceSelector": {"matchNames": ["a", "b"]}})
    (job,) = build_scrape_configs([monitor], settings=SETTINGS)
    assert job["kubernetes_sd_configs"][0]["namespaces"] == {"names": ["a", "b"]}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        subprocess.run(["bash", str(prometheus.DEPS_SCRIPT)], check=False, capture_output=True)
        found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is absent and scripts/prometheus-deps.sh could not install it")
    return found


def test_every_job_in_its_static_variant_passes_debians_promtool(
    promtool: str, tmp_path: Path
) -> None:
    # Debian's build lacks Kubernetes discovery; the discovery variant is checked by the
    # promtool built with it, when the integration tests start that Prometheus.
    ca = tmp_path / "ca.crt"
    ca.write_text("")
    monitors = prometheus.load_monitors()
    static = {
        f"moorage-system/{m['metadata']['name']}": [StaticTarget("127.0.0.1:9", {})]
        for m in monitors
    }
    jobs = build_scrape_configs(
        monitors,
        settings=ScrapeSettings(files={prometheus.WEBHOOK_CA: ca}, static_targets=static),
    )
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(build_prometheus_config(jobs), sort_keys=False)
    )
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_only_a_configuration_with_kubernetes_discovery_needs_the_upstream_build() -> None:
    kubernetes = prometheus.moorage_prometheus_config(
        kubeconfig=KUBECONFIG, webhook_ca_file=WEBHOOK_CA_FILE
    )
    assert prometheus.needs_kubernetes_discovery(kubernetes)
    assert not prometheus.needs_kubernetes_discovery(build_prometheus_config([]))


def test_upstream_build_pins_the_module_and_keeps_only_kubernetes_discovery() -> None:
    go_mod = prometheus.prometheus_go_mod(prometheus.PROMETHEUS_MODULE_VERSION)
    assert (
        f"require github.com/prometheus/prometheus v{prometheus.PROMETHEUS_MODULE_VERSION}"
        in go_mod
    )
    major, minor, patch = prometheus.PROMETHEUS_VERSION.split(".")
    assert f"0.{int(major) * 100 + int(minor)}.{patch}" == prometheus.PROMETHEUS_MODULE_VERSION
    assert set(prometheus.PROMETHEUS_BUILD_TAGS.split(",")) == {
        "remove_all_sd",
        "enable_kubernetes_sd",
    }


def test_explicit_prometheus_binary_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "prometheus"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv(prometheus.PROMETHEUS_BIN_ENV, str(fake))
    assert prometheus.ensure_prometheus(print, kubernetes_discovery=True) == fake
    monkeypatch.setenv(prometheus.PROMETHEUS_BIN_ENV, str(tmp_path / "missing"))
    with pytest.raises(prometheus.PrometheusError, match="not an executable"):
        prometheus.ensure_prometheus(print, kubernetes_discovery=False)


def test_prometheus_config_carries_rule_files_and_intervals() -> None:
    config = build_prometheus_config([], scrape_interval="5s", rule_files=[Path("/r.yaml")])
    assert config == {
        "global": {"scrape_interval": "5s", "evaluation_interval": "30s"},
        "scrape_configs": [],
        "rule_files": ["/r.yaml"],
    }


def test_a_configuration_promtool_rejects_never_starts(promtool: str, tmp_path: Path) -> None:
    bad = {"scrape_configs": [{"job_name": "x", "scrape_interval": "often"}]}
    server = prometheus.Prometheus(bad, tmp_path)
    with pytest.raises(prometheus.PrometheusError, match="promtool rejects") as info:
        server.start()
    assert "often" in str(info.value)
    assert server.port == 0  # nothing was started


def test_an_interrupted_start_ends_the_servers_whole_process_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A "prometheus" that never becomes ready and leaves a child in its group, and a promtool
    # that accepts any configuration.
    children = tmp_path / "children"
    binary = tmp_path / "bin" / "prometheus"
    binary.parent.mkdir()
    binary.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {children}\nwait\n")
    (tmp_path / "bin" / "promtool").write_text("#!/bin/sh\nexit 0\n")
    for tool in binary.parent.iterdir():
        tool.chmod(0o755)

    def interrupted() -> bool:
        # Ctrl-C during the readiness wait, once the server's child runs.
        if children.is_file() and children.read_text().strip():
            raise KeyboardInterrupt
        return False

    server = prometheus.Prometheus({}, tmp_path / "state", binary=binary)
    monkeypatch.setattr(server, "_ready", interrupted)
    with pytest.raises(KeyboardInterrupt):
        server.start()
    child = int(children.read_text())
    deadline = time.monotonic() + 10  # the group was signalled; its last member may lag
    while processes.pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not processes.pid_alive(child)
