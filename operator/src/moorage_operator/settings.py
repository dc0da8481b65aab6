"""The operator's settings: every one an environment variable and a flag (spec §6).

`OperatorSettings.from_env_and_args(argv)` reads the environment, then the command line; a flag wins
over its variable, an empty variable counts as unset. A value we cannot use raises
`SettingError` naming the variable and the flag, so the operator refuses to start with a message
a person can act on.

Pure: parsing and validation only (the environment is passed in or read from `os.environ`).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from moorage_api.constants import DEFAULT_CLUSTER_DOMAIN
from moorage_core.settings import (
    SettingError,
    SettingSpec,
    add_setting_flags,
    parse_bind,
    parse_bool,
    parse_choice,
    parse_directory,
    parse_list,
    parse_positive_duration,
    read_settings,
)

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LOG_FORMATS = ("json", "console", "auto")
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _version() -> str:
    try:
        return metadata.version("moorage")
    except metadata.PackageNotFoundError:
        return "latest"


def _default_pod_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class OperatorSettings:
    """Everything the operator is configured with."""

    watch_namespaces: tuple[str, ...] = ()
    """WATCH_NAMESPACES / --watch-namespaces: comma-separated namespaces to watch, one list/watch
    each. Default empty: every namespace (one cluster-wide list/watch per kind)."""
    leader_election: bool = True
    """LEADER_ELECTION / --leader-election: hold the Lease `moorage-operator` before reconciling.
    Default true; turn off only when a single replica runs."""
    reconcile_concurrency: int = 4
    """RECONCILE_CONCURRENCY / --reconcile-concurrency: workers per controller (1-1000).
    Default 4."""
    resync_period: float = 36000.0
    """RESYNC_PERIOD / --resync-period: seconds (Go duration accepted, e.g. `10h`) between full
    re-enqueues of every cached object, jittered by ±10 %. Default 10h."""
    proxyrunner_image: str = field(default_factory=lambda: f"moorage/proxyrunner:{_version()}")
    """PROXYRUNNER_IMAGE / --proxyrunner-image: image of the proxy runner Deployment the operator
    creates per MCPServer. Default `moorage/proxyrunner:<operator version>`."""
    registry_api_image: str = field(default_factory=lambda: f"moorage/registry-api:{_version()}")
    """REGISTRY_API_IMAGE / --registry-api-image: image of an MCPRegistry's API Deployment.
    Default `moorage/registry-api:<operator version>`."""
    log_format: str = "auto"
    """LOG_FORMAT / --log-format: `json`, `console`, or `auto` (console on a TTY, JSON
    otherwise). Default auto."""
    log_level: str = "info"
    """LOG_LEVEL / --log-level: debug, info, warning, error or critical. Default info."""
    metrics_bind: tuple[str, int] = ("0.0.0.0", 8443)  # noqa: S104 - scraped from outside the pod
    """METRICS_BIND / --metrics-bind: HOST:PORT (or :PORT) of the HTTPS server for /metrics,
    /healthz and /readyz. Default `:8443` (all interfaces)."""
    metrics_cert_dir: Path | None = None
    """METRICS_CERT_DIR / --metrics-cert-dir: directory holding tls.crt and tls.key for that
    server, reloaded when they change. Default unset: a self-signed certificate."""
    pod_namespace: str = "moorage-system"
    """POD_NAMESPACE / --pod-namespace: the operator's own namespace, where its Lease lives.
    Default moorage-system."""
    pod_name: str = field(default_factory=_default_pod_name)
    """POD_NAME / --pod-name: this replica's identity (the Lease's holderIdentity, Events'
    reportingInstance). Default `<hostname>-<pid>`."""
    kubeconfig: str | None = None
    """KUBECONFIG / --kubeconfig: kubeconfig file to use. Default unset: the in-cluster service
    account, else ~/.kube/config."""
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN
    """CLUSTER_DOMAIN / --cluster-domain: the cluster's DNS domain; the proxies accept their
    Service's names under it (`mcp-<name>-proxy.<ns>.svc.<domain>`). Default cluster.local."""
    startup_timeout: float = 60.0
    """STARTUP_TIMEOUT / --startup-timeout: seconds (Go duration accepted) the apiserver may take
    to answer at start before the operator exits 1 naming it. Default 60s."""

    @classmethod
    def from_env_and_args(
        cls, argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None
    ) -> OperatorSettings:
        """Settings from `environ` (default `os.environ`) overridden by the flags in `argv`
        (default none). Raises `SettingError` naming the setting for a bad value."""
        env = os.environ if environ is None else environ
        args = vars(build_parser().parse_args(list(argv or [])))
        return cls(**read_settings(_SPECS, args=args, environ=env))


def _namespace(text: str) -> str:
    value = text.strip()
    if len(value) > 63 or not _DNS_LABEL.fullmatch(value):
        raise SettingError(f"{text!r} is not a namespace name (a DNS-1123 label)")
    return value


def _namespaces(text: str) -> tuple[str, ...]:
    return tuple(_namespace(item) for item in parse_list(text))


def _concurrency(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise SettingError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 1000:
        raise SettingError(f"{value} is out of range (1-1000)")
    return value


def _image(text: str) -> str:
    value = text.strip()
    if not value or any(c.isspace() for c in value):
        raise SettingError(f"{text!r} is not an image reference")
    return value


def _pod_name(text: str) -> str:
    value = text.strip()
    if not value or len(value) > 253:
        raise SettingError(f"{text!r} must be 1-253 characters")
    return value


def _domain(text: str) -> str:
    value = text.strip().lower().rstrip(".")
    labels = value.split(".")
    if len(value) > 253 or not all(len(x) <= 63 and _DNS_LABEL.fullmatch(x) for x in labels):
        raise SettingError(f"{text!r} is not a DNS domain (e.g. cluster.local)")
    return value


def _file(text: str) -> str:
    value = text.strip()
    if not Path(value).is_file():
        raise SettingError(f"{text!r} is not a file")
    return value


_SPECS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "watch_namespaces",
        "WATCH_NAMESPACES",
        "watch-namespaces",
        _namespaces,
        "NS[,NS...]",
        "namespaces to watch (default: all)",
    ),
    SettingSpec(
        "leader_election",
        "LEADER_ELECTION",
        "leader-election",
        parse_bool,
        "BOOL",
        "hold the Lease before reconciling (default: true)",
    ),
    SettingSpec(
        "reconcile_concurrency",
        "RECONCILE_CONCURRENCY",
        "reconcile-concurrency",
        _concurrency,
        "N",
        "workers per controller (default: 4)",
    ),
    SettingSpec(
        "resync_period",
        "RESYNC_PERIOD",
        "resync-period",
        parse_positive_duration,
        "DURATION",
        "period of full re-enqueues, e.g. 10h (default: 10h)",
    ),
    SettingSpec(
        "proxyrunner_image",
        "PROXYRUNNER_IMAGE",
        "proxyrunner-image",
        _image,
        "IMAGE",
        "image of the proxy runner Deployments",
    ),
    SettingSpec(
        "registry_api_image",
        "REGISTRY_API_IMAGE",
        "registry-api-image",
        _image,
        "IMAGE",
        "image of the registry API Deployments",
    ),
    SettingSpec(
        "log_format",
        "LOG_FORMAT",
        "log-format",
        parse_choice(_LOG_FORMATS),
        "FORMAT",
        "json, console or auto (default: auto)",
    ),
    SettingSpec(
        "log_level",
        "LOG_LEVEL",
        "log-level",
        parse_choice(_LOG_LEVELS),
        "LEVEL",
        "debug, info, warning, error or critical (default: info)",
    ),
    SettingSpec(
        "metrics_bind",
        "METRICS_BIND",
        "metrics-bind",
        parse_bind,
        "HOST:PORT",
        "address of the HTTPS metrics/health server (default: :8443)",
    ),
    SettingSpec(
        "metrics_cert_dir",
        "METRICS_CERT_DIR",
        "metrics-cert-dir",
        parse_directory,
        "DIR",
        "directory with tls.crt and tls.key (default: self-signed)",
    ),
    SettingSpec(
        "pod_namespace",
        "POD_NAMESPACE",
        "pod-namespace",
        _namespace,
        "NS",
        "the operator's own namespace (default: moorage-system)",
    ),
    SettingSpec(
        "pod_name",
        "POD_NAME",
        "pod-name",
        _pod_name,
        "NAME",
        "this replica's identity (default: hostname-pid)",
    ),
    SettingSpec(
        "kubeconfig",
        "KUBECONFIG",
        "kubeconfig",
        _file,
        "FILE",
        "kubeconfig file (default: in-cluster, then ~/.kube/config)",
    ),
    SettingSpec(
        "cluster_domain",
        "CLUSTER_DOMAIN",
        "cluster-domain",
        _domain,
        "DOMAIN",
        "the cluster's DNS domain (default: cluster.local)",
    ),
    SettingSpec(
        "startup_timeout",
        "STARTUP_TIMEOUT",
        "startup-timeout",
        parse_positive_duration,
        "DURATION",
        "how long the apiserver may take to answer at start (default: 60s)",
    ),
)


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog="moorage-operator",
        description="Runs MCP servers on Kubernetes: reconciles MCPServer, MCPToolConfig and "
        "MCPRegistry objects. Every flag can also be set by the environment variable named "
        "in its help.",
    )
    add_setting_flags(parser, _SPECS)
    return parser
