"""Prometheus scrape configurations from our ServiceMonitors and PodMonitors.

Pure: no I/O. What prometheus-operator would generate for the monitors in
deploy/components/monitoring, faithful where it matters and no more: one job per monitor endpoint
named as it names them (`serviceMonitor/<ns>/<name>/<i>`, `podMonitor/<ns>/<name>/<i>`),
Kubernetes service discovery (role `endpoints` or `pod`) against an apiserver reached through a
kubeconfig, the relabelling that selects by the monitor's label selector and port and sets the
target labels (`job`, `namespace`, `service`, `pod`, `container`, `endpoint`, `podTargetLabels`),
and the monitor's scheme, path, interval, TLS and token settings. Leaving a declared setting out
would make a silently different scrape, so a field this module does not translate is an error.

Files stand in for what a Prometheus pod would mount: `KeyRef` → path for Secret and ConfigMap
keys (a CA, a token), and `token_file` for a `bearerTokenFile`. A `StaticTarget` replaces
discovery for a monitor with fixed addresses and the discovery labels Kubernetes SD would have
attached (built by `endpoint_discovery_labels` / `pod_discovery_labels`), so the same relabelling
runs on targets the apiserver could not list (it refuses loopback endpoint addresses).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

SERVICE_MONITOR = "ServiceMonitor"
POD_MONITOR = "PodMonitor"

_ENDPOINT_FIELDS = frozenset(
    {
        "port",
        "path",
        "scheme",
        "interval",
        "scrapeTimeout",
        "honorLabels",
        "tlsConfig",
        "bearerTokenFile",
        "bearerTokenSecret",
        "authorization",
    }
)
_TLS_FIELDS = frozenset(
    {"insecureSkipVerify", "serverName", "ca", "caFile", "cert", "certFile", "keySecret", "keyFile"}
)
_SPEC_FIELDS = {
    SERVICE_MONITOR: frozenset(
        {
            "selector",
            "namespaceSelector",
            "endpoints",
            "jobLabel",
            "targetLabels",
            "podTargetLabels",
        }
    ),
    POD_MONITOR: frozenset(
        {"selector", "namespaceSelector", "podMetricsEndpoints", "jobLabel", "podTargetLabels"}
    ),
}

Json = dict[str, Any]


class ScrapeConfigError(ValueError):
    """A monitor uses something this translation does not cover, or a file it needs is missing."""


@dataclass(frozen=True, slots=True)
class KeyRef:
    """One key of a Secret or ConfigMap that a monitor references (a CA, a token, a key)."""

    kind: Literal["secret", "configmap"]
    namespace: str
    name: str
    key: str


@dataclass(frozen=True, slots=True)
class StaticTarget:
    """A fixed target for a monitor, with the discovery labels Kubernetes SD would give it."""

    address: str
    """host:port to scrape."""
    discovery_labels: Mapping[str, str]
    """`__meta_kubernetes_*` labels, as `endpoint_discovery_labels` / `pod_discovery_labels` build."""


@dataclass(frozen=True, slots=True)
class ScrapeSettings:
    """What a Prometheus outside the cluster uses in place of the pod a Prometheus would run in."""

    kubeconfig: Path | None = None
    """For Kubernetes service discovery; required unless every monitor has static targets."""
    files: Mapping[KeyRef, Path] | None = None
    """Where the Secret and ConfigMap keys the monitors reference are written."""
    token_file: Path | None = None
    """Read instead of every `bearerTokenFile` the monitors name (a path inside a pod)."""
    static_targets: Mapping[str, Sequence[StaticTarget]] | None = None
    """`<namespace>/<name>` of a monitor → its fixed targets; its jobs then skip discovery."""
    interval: str | None = None
    """Replaces every endpoint's `interval` (a test that cannot wait 30 s for a first scrape)."""


def sanitize_label_name(name: str) -> str:
    """A Kubernetes label key as Prometheus spells it in discovery and target labels."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def monitor_key(monitor: Mapping[str, Any]) -> str:
    meta = monitor["metadata"]
    return f"{meta['namespace']}/{meta['name']}"


def build_scrape_configs(
    monitors: Sequence[Mapping[str, Any]], *, settings: ScrapeSettings
) -> list[Json]:
    """One scrape config per endpoint of every ServiceMonitor and PodMonitor, in order."""
    jobs: list[Json] = []
    for monitor in monitors:
        kind = monitor.get("kind")
        if kind not in _SPEC_FIELDS:
            raise ScrapeConfigError(f"{kind} {monitor_key(monitor)} is not a monitor")
        spec = monitor["spec"]
        _refuse_unknown(spec, _SPEC_FIELDS[kind], where=f"{kind} {monitor_key(monitor)} spec")
        endpoints = spec.get("endpoints" if kind == SERVICE_MONITOR else "podMetricsEndpoints")
        for index, endpoint in enumerate(endpoints or []):
            jobs.append(_job(monitor, endpoint, index=index, settings=settings))
    return jobs


def build_prometheus_config(
    scrape_configs: Sequence[Mapping[str, Any]],
    *,
    scrape_interval: str = "30s",
    evaluation_interval: str = "30s",
    rule_files: Sequence[Path] = (),
) -> Json:
    """A whole prometheus.yml: global intervals, rule files and the scrape configs."""
    config: Json = {
        "global": {
            "scrape_interval": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        "scrape_configs": [dict(job) for job in scrape_configs],
    }
    if rule_files:
        config["rule_files"] = [str(path) for path in rule_files]
    return config


def endpoint_discovery_labels(
    service: Mapping[str, Any], *, port_name: str, pod_name: str, container: str = ""
) -> dict[str, str]:
    """The labels role `endpoints` discovery gives an address of `service` backed by a pod."""
    meta = service["metadata"]
    labels = {
        "__meta_kubernetes_namespace": meta["namespace"],
        "__meta_kubernetes_service_name": meta["name"],
        "__meta_kubernetes_endpoint_port_name": port_name,
        "__meta_kubernetes_endpoint_ready": "true",
        "__meta_kubernetes_endpoint_address_target_kind": "Pod",
        "__meta_kubernetes_endpoint_address_target_name": pod_name,
        "__meta_kubernetes_pod_name": pod_name,
        "__meta_kubernetes_pod_phase": "Running",
    }
    if container:
        labels["__meta_kubernetes_pod_container_name"] = container
    return labels | _object_label_labels("service", meta)


def pod_discovery_labels(
    pod: Mapping[str, Any], *, container: str, port_name: str = ""
) -> dict[str, str]:
    """The labels role `pod` discovery gives one container port of `pod`."""
    meta = pod["metadata"]
    labels = {
        "__meta_kubernetes_namespace": meta["namespace"],
        "__meta_kubernetes_pod_name": meta["name"],
        "__meta_kubernetes_pod_container_name": container,
        "__meta_kubernetes_pod_container_port_name": port_name,
        "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_pod_ready": "true",
    }
    return labels | _object_label_labels("pod", meta)


def _object_label_labels(role: str, meta: Mapping[str, Any]) -> dict[str, str]:
    """`__meta_kubernetes_<role>_label_<name>` and `..._labelpresent_<name>` for each label."""
    labels: dict[str, str] = {}
    for key, value in (meta.get("labels") or {}).items():
        labels[f"__meta_kubernetes_{role}_label_{sanitize_label_name(key)}"] = value
        labels[f"__meta_kubernetes_{role}_labelpresent_{sanitize_label_name(key)}"] = "true"
    return labels


def _refuse_unknown(fields: Mapping[str, Any], known: frozenset[str], *, where: str) -> None:
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ScrapeConfigError(
            f"{where}: {', '.join(unknown)} not translated into a scrape config; "
            "extend moorage_dev.scrapeconfigs rather than scrape differently than declared"
        )


def _job(
    monitor: Mapping[str, Any],
    endpoint: Mapping[str, Any],
    *,
    index: int,
    settings: ScrapeSettings,
) -> Json:
    kind = monitor["kind"]
    namespace = monitor["metadata"]["namespace"]
    spec = monitor["spec"]
    prefix = "serviceMonitor" if kind == SERVICE_MONITOR else "podMonitor"
    where = f"{kind} {monitor_key(monitor)} endpoint {index}"
    _refuse_unknown(endpoint, _ENDPOINT_FIELDS, where=where)
    job: Json = {
        "job_name": f"{prefix}/{monitor_key(monitor)}/{index}",
        "honor_labels": bool(endpoint.get("honorLabels", False)),
        "metrics_path": endpoint.get("path", "/metrics"),
        "scheme": endpoint.get("scheme", "http"),
    }
    interval = settings.interval or endpoint.get("interval")
    if interval:
        job["scrape_interval"] = interval
    if "scrapeTimeout" in endpoint:
        job["scrape_timeout"] = endpoint["scrapeTimeout"]
    if "tlsConfig" in endpoint:
        job["tls_config"] = _tls_config(
            endpoint["tlsConfig"], namespace=namespace, settings=settings, where=where
        )
    authorization = _authorization(endpoint, namespace=namespace, settings=settings, where=where)
    if authorization:
        job["authorization"] = authorization

    static = (settings.static_targets or {}).get(monitor_key(monitor))
    if static is not None:
        job["static_configs"] = [
            {"targets": [t.address], "labels": dict(t.discovery_labels)} for t in static
        ]
    else:
        if settings.kubeconfig is None:
            raise ScrapeConfigError(f"{where}: discovery needs a kubeconfig (or static targets)")
        role = "endpoints" if kind == SERVICE_MONITOR else "pod"
        discovery: Json = {"role": role, "kubeconfig_file": str(settings.kubeconfig)}
        names = _namespaces(spec.get("namespaceSelector"), own=namespace)
        if names is not None:
            discovery["namespaces"] = {"names": names}
        job["kubernetes_sd_configs"] = [discovery]

    if kind == SERVICE_MONITOR:
        job["relabel_configs"] = _service_monitor_relabelling(monitor, endpoint)
    else:
        job["relabel_configs"] = _pod_monitor_relabelling(monitor, endpoint)
    return job


def _namespaces(selector: Mapping[str, Any] | None, *, own: str) -> list[str] | None:
    """The namespaces to discover in; None for all of them."""
    if not selector:
        return [own]
    if selector.get("any"):
        return None
    return list(selector.get("matchNames") or [own])


def _file_for(ref: KeyRef, *, settings: ScrapeSettings, where: str) -> str:
    path = (settings.files or {}).get(ref)
    if path is None:
        raise ScrapeConfigError(
            f"{where}: needs the file holding {ref.kind} {ref.namespace}/{ref.name} key {ref.key}"
        )
    return str(path)


def _key_ref(source: Mapping[str, Any], *, namespace: str, where: str) -> KeyRef:
    """A `{secret: {name, key}}` / `{configMap: {name, key}}` choice, or a bare SecretKeySelector."""
    if "secret" in source:
        return KeyRef("secret", namespace, source["secret"]["name"], source["secret"]["key"])
    if "configMap" in source:
        selector = source["configMap"]
        return KeyRef("configmap", namespace, selector["name"], selector["key"])
    if "name" in source and "key" in source:
        return KeyRef("secret", namespace, source["name"], source["key"])
    raise ScrapeConfigError(f"{where}: {dict(source)} names neither a Secret nor a ConfigMap key")


def _tls_config(
    tls: Mapping[str, Any], *, namespace: str, settings: ScrapeSettings, where: str
) -> Json:
    _refuse_unknown(tls, _TLS_FIELDS, where=f"{where} tlsConfig")
    out: Json = {}
    if "insecureSkipVerify" in tls:
        out["insecure_skip_verify"] = bool(tls["insecureSkipVerify"])
    if "serverName" in tls:
        out["server_name"] = tls["serverName"]
    for field, file_field, target in (
        ("ca", "caFile", "ca_file"),
        ("cert", "certFile", "cert_file"),
        ("keySecret", "keyFile", "key_file"),
    ):
        if field in tls:
            ref = _key_ref(tls[field], namespace=namespace, where=where)
            out[target] = _file_for(ref, settings=settings, where=where)
        elif file_field in tls:
            out[target] = tls[file_field]
    return out


def _authorization(
    endpoint: Mapping[str, Any], *, namespace: str, settings: ScrapeSettings, where: str
) -> Json | None:
    if "authorization" in endpoint:
        auth = endpoint["authorization"]
        out: Json = {"type": auth.get("type", "Bearer")}
        if "credentials" in auth:
            ref = _key_ref(auth["credentials"], namespace=namespace, where=where)
            out["credentials_file"] = _file_for(ref, settings=settings, where=where)
        return out
    if "bearerTokenSecret" in endpoint:
        ref = _key_ref(endpoint["bearerTokenSecret"], namespace=namespace, where=where)
        return {
            "type": "Bearer",
            "credentials_file": _file_for(ref, settings=settings, where=where),
        }
    if "bearerTokenFile" in endpoint:
        return {
            "type": "Bearer",
            "credentials_file": str(settings.token_file or endpoint["bearerTokenFile"]),
        }
    return None


def _selector_relabelling(selector: Mapping[str, Any], *, meta: str) -> list[Json]:
    """keep/drop rules equal to a label selector over `__meta_kubernetes_<meta>_label_*`."""
    rules: list[Json] = []
    for key in sorted(selector.get("matchLabels") or {}):
        name = sanitize_label_name(key)
        rules.append(
            {
                "action": "keep",
                "source_labels": [
                    f"__meta_kubernetes_{meta}_label_{name}",
                    f"__meta_kubernetes_{meta}_labelpresent_{name}",
                ],
                "regex": f"({re.escape(selector['matchLabels'][key])});true",
            }
        )
    for expression in selector.get("matchExpressions") or []:
        name = sanitize_label_name(expression["key"])
        value_label = f"__meta_kubernetes_{meta}_label_{name}"
        present_label = f"__meta_kubernetes_{meta}_labelpresent_{name}"
        values = "|".join(re.escape(v) for v in expression.get("values") or [])
        operator = expression["operator"]
        if operator in ("In", "NotIn"):
            rules.append(
                {
                    "action": "keep" if operator == "In" else "drop",
                    "source_labels": [value_label, present_label],
                    "regex": f"({values});true",
                }
            )
        elif operator in ("Exists", "DoesNotExist"):
            rules.append(
                {
                    "action": "keep" if operator == "Exists" else "drop",
                    "source_labels": [present_label],
                    "regex": "true",
                }
            )
        else:
            raise ScrapeConfigError(f"unknown label selector operator {operator!r}")
    return rules


def _copy(source: str, target: str) -> Json:
    return {"source_labels": [source], "target_label": target}


def _set(target: str, value: str) -> Json:
    return {"target_label": target, "replacement": value}


_NOT_RUNNING = {
    "action": "drop",
    "source_labels": ["__meta_kubernetes_pod_phase"],
    "regex": "(Failed|Succeeded)",
}


def _label_copies(labels: Sequence[str], *, meta: str) -> list[Json]:
    """`targetLabels` / `podTargetLabels`: a Kubernetes label becomes a target label."""
    return [
        {
            "source_labels": [f"__meta_kubernetes_{meta}_label_{sanitize_label_name(label)}"],
            "target_label": sanitize_label_name(label),
            "regex": "(.+)",
            "replacement": "${1}",
        }
        for label in labels
    ]


def _service_monitor_relabelling(
    monitor: Mapping[str, Any], endpoint: Mapping[str, Any]
) -> list[Json]:
    spec = monitor["spec"]
    rules = _selector_relabelling(spec.get("selector") or {}, meta="service")
    if "port" in endpoint:
        rules.append(
            {
                "action": "keep",
                "source_labels": ["__meta_kubernetes_endpoint_port_name"],
                "regex": re.escape(endpoint["port"]),
            }
        )
    for kind, label in (("Node", "node"), ("Pod", "pod")):
        rules.append(
            {
                "source_labels": [
                    "__meta_kubernetes_endpoint_address_target_kind",
                    "__meta_kubernetes_endpoint_address_target_name",
                ],
                "separator": ";",
                "regex": f"{kind};(.*)",
                "replacement": "${1}",
                "target_label": label,
            }
        )
    rules += [
        _copy("__meta_kubernetes_namespace", "namespace"),
        _copy("__meta_kubernetes_service_name", "service"),
        _copy("__meta_kubernetes_pod_name", "pod"),
        _copy("__meta_kubernetes_pod_container_name", "container"),
        _NOT_RUNNING,
    ]
    rules += _label_copies(spec.get("targetLabels") or [], meta="service")
    rules += _label_copies(spec.get("podTargetLabels") or [], meta="pod")
    # The job is the Service's name unless `jobLabel` names a Service label to take it from.
    rules.append({**_copy("__meta_kubernetes_service_name", "job"), "replacement": "${1}"})
    if spec.get("jobLabel"):
        job_label = f"__meta_kubernetes_service_label_{sanitize_label_name(spec['jobLabel'])}"
        rules.append(
            {**_copy(job_label, "job"), "regex": "(.+)", "replacement": "${1}"},
        )
    if "port" in endpoint:
        rules.append(_set("endpoint", endpoint["port"]))
    return rules


def _pod_monitor_relabelling(monitor: Mapping[str, Any], endpoint: Mapping[str, Any]) -> list[Json]:
    spec = monitor["spec"]
    rules = [_NOT_RUNNING, *_selector_relabelling(spec.get("selector") or {}, meta="pod")]
    if "port" in endpoint:
        rules.append(
            {
                "action": "keep",
                "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                "regex": re.escape(endpoint["port"]),
            }
        )
    rules += [
        _copy("__meta_kubernetes_namespace", "namespace"),
        _copy("__meta_kubernetes_pod_container_name", "container"),
        _copy("__meta_kubernetes_pod_name", "pod"),
    ]
    rules += _label_copies(spec.get("podTargetLabels") or [], meta="pod")
    # The job is `<namespace>/<name>` of the PodMonitor unless `jobLabel` names a pod label.
    rules.append(_set("job", monitor_key(monitor)))
    if spec.get("jobLabel"):
        job_label = f"__meta_kubernetes_pod_label_{sanitize_label_name(spec['jobLabel'])}"
        rules.append({**_copy(job_label, "job"), "regex": "(.+)", "replacement": "${1}"})
    if "port" in endpoint:
        rules.append(_set("endpoint", endpoint["port"]))
    return rules
