"""A real Prometheus for Moorage's monitoring manifests, run by us, bound to 127.0.0.1.

The scrape jobs come from our ServiceMonitors and PodMonitors (`scrapeconfigs`, pure); this module
is the thin shell around them: it reads the monitors from deploy/components/monitoring, finds the
binary, writes prometheus.yml, lets promtool check it, runs the server on a free loopback port and
asks its HTTP API for targets and query results.

Two binaries, chosen by the configuration. Debian's `prometheus` (2.42, installed by
scripts/prometheus-deps.sh; its service is not used) is built without Kubernetes service
discovery, so it serves only static jobs. A configuration with `kubernetes_sd_configs` runs
upstream Prometheus built once from Go modules with only the file, HTTP and Kubernetes discovery
mechanisms (`remove_all_sd,enable_kubernetes_sd`), with its promtool, cached beside the control
plane binaries. `MOORAGE_PROMETHEUS_BIN` names a binary to use for both.

What a scrape of Moorage needs (spec §8, moorage_core.serving): the operator's and the webhook's
/metrics on :8443 are HTTPS and ask for no token. The operator's certificate is self-signed unless
METRICS_CERT_DIR names one (its monitor skips verification); the webhook's is the cert-manager
certificate, verified against `WEBHOOK_CA` (Secret moorage-webhook-tls, key ca.crt) as
`moorage-webhook.moorage-system.svc`. Proxy runners and registry APIs serve plain HTTP.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from moorage_dev import processes
from moorage_dev.binaries import Reporter, build_once, cache_root, go_build, go_module
from moorage_dev.cluster import free_port
from moorage_dev.scrapeconfigs import (
    POD_MONITOR,
    SERVICE_MONITOR,
    KeyRef,
    ScrapeSettings,
    build_prometheus_config,
    build_scrape_configs,
)

REPO = Path(__file__).resolve().parents[3]
MONITORING_DIR = REPO / "deploy" / "components" / "monitoring"
DEPS_SCRIPT = REPO / "scripts" / "prometheus-deps.sh"
PROMETHEUS_BIN_ENV = "MOORAGE_PROMETHEUS_BIN"
PROMETHEUS_VERSION = "3.16.0"
# Prometheus 3.x publishes its Go module as v0.3<minor>.<patch>.
PROMETHEUS_MODULE_VERSION = "0.316.0"
# Every discovery mechanism but file, HTTP (always built) and Kubernetes is left out: the others
# pull in cloud SDKs we never use.
PROMETHEUS_BUILD_TAGS = "remove_all_sd,enable_kubernetes_sd"
# The webhook's ServiceMonitor verifies its certificate against this key.
WEBHOOK_CA = KeyRef("secret", "moorage-system", "moorage-webhook-tls", "ca.crt")

_MONITOR_FILES = ("servicemonitors.yaml", "podmonitor.yaml")


class PrometheusError(RuntimeError):
    """Prometheus could not be installed, configured, started or asked."""


def load_monitors(directory: Path = MONITORING_DIR) -> list[dict[str, Any]]:
    """The ServiceMonitors and PodMonitors of the monitoring component, in file order."""
    monitors: list[dict[str, Any]] = []
    for name in _MONITOR_FILES:
        for doc in yaml.safe_load_all((directory / name).read_text()):
            if doc and doc.get("kind") in (SERVICE_MONITOR, POD_MONITOR):
                monitors.append(doc)
    return monitors


def moorage_prometheus_config(
    *,
    kubeconfig: Path,
    webhook_ca_file: Path,
    token_file: Path | None = None,
    interval: str | None = None,
    monitors: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """prometheus.yml scraping every Moorage component a cluster runs, found through `kubeconfig`.

    `webhook_ca_file` holds the webhook certificate's CA (ca.crt of Secret moorage-webhook-tls);
    `token_file` stands in for any `bearerTokenFile` a monitor names (ours name none: /metrics is
    open); `interval` replaces the monitors' 30 s (tests).
    """
    settings = ScrapeSettings(
        kubeconfig=kubeconfig,
        files={WEBHOOK_CA: webhook_ca_file},
        token_file=token_file,
        interval=interval,
    )
    chosen = load_monitors() if monitors is None else monitors
    return build_prometheus_config(build_scrape_configs(chosen, settings=settings))


def needs_kubernetes_discovery(config: Mapping[str, Any]) -> bool:
    return any("kubernetes_sd_configs" in job for job in config.get("scrape_configs") or [])


def prometheus_go_mod(module_version: str) -> str:
    return (
        "module moorage.dev/prometheus\n\ngo 1.26.7\n\n"
        f"require github.com/prometheus/prometheus v{module_version}\n"
    )


PROMETHEUS_TOOLS_GO = (
    "//go:build tools\n\npackage tools\n\nimport (\n"
    '\t_ "github.com/prometheus/prometheus/cmd/prometheus"\n'
    '\t_ "github.com/prometheus/prometheus/cmd/promtool"\n)\n'
)


def prometheus_cache_dir() -> Path:
    return cache_root() / "controlplane" / f"prometheus-{PROMETHEUS_VERSION}-kubernetes-sd"


def build_prometheus(go: str, out: Path, *, report: Reporter) -> None:
    files = {
        "go.mod": prometheus_go_mod(PROMETHEUS_MODULE_VERSION),
        "tools.go": PROMETHEUS_TOOLS_GO,
    }
    what = f"prometheus v{PROMETHEUS_VERSION}"
    with go_module(go, name="prometheus", files=files, what=what, report=report) as work:
        go_build(
            go,
            work,
            tags=PROMETHEUS_BUILD_TAGS,
            ldflags=f"-s -w -X github.com/prometheus/common/version.Version={PROMETHEUS_VERSION}",
            out=f"{out}/",
            targets=[
                "github.com/prometheus/prometheus/cmd/prometheus",
                "github.com/prometheus/prometheus/cmd/promtool",
            ],
            what=f"build {what} with Kubernetes discovery",
            report=report,
        )


def ensure_prometheus_with_kubernetes_discovery(report: Reporter) -> Path:
    """Upstream Prometheus with Kubernetes discovery (and promtool beside it), built once."""
    directory = prometheus_cache_dir()
    binary = directory / "bin" / "prometheus"
    build_once(
        directory,
        what=f"prometheus v{PROMETHEUS_VERSION}",
        complete=binary.is_file,
        build=lambda go, out: build_prometheus(go, out, report=report),
        into=binary.parent,
        # promtool first: a present prometheus means the pair is complete.
        names=("promtool", "prometheus"),
        report=report,
    )
    return binary


def ensure_debian_prometheus(report: Reporter) -> Path:
    """Debian's prometheus (static jobs only), installed with scripts/prometheus-deps.sh if missing."""
    found = shutil.which("prometheus")
    if found is None and DEPS_SCRIPT.is_file():
        report("installing Debian's prometheus package (scripts/prometheus-deps.sh)")
        result = subprocess.run(
            ["bash", str(DEPS_SCRIPT)], capture_output=True, text=True, check=False
        )
        found = shutil.which("prometheus")
        if found is None:
            raise PrometheusError(
                f"scripts/prometheus-deps.sh could not install prometheus: {result.stderr.strip()}"
            )
    if found is None:
        raise PrometheusError(
            f"prometheus was not found: install Debian's prometheus package or set "
            f"{PROMETHEUS_BIN_ENV}"
        )
    return Path(found)


def ensure_prometheus(report: Reporter, *, kubernetes_discovery: bool) -> Path:
    """`MOORAGE_PROMETHEUS_BIN`, else the binary that can run such a configuration."""
    explicit = os.environ.get(PROMETHEUS_BIN_ENV)
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise PrometheusError(f"{PROMETHEUS_BIN_ENV}={explicit} is not an executable file")
        return path
    if kubernetes_discovery:
        return ensure_prometheus_with_kubernetes_discovery(report)
    return ensure_debian_prometheus(report)


class Prometheus:
    """One Prometheus process serving `config` from `state_dir` on 127.0.0.1:<free port>."""

    def __init__(
        self,
        config: Mapping[str, Any],
        state_dir: Path,
        *,
        binary: Path | None = None,
        report: Reporter | None = None,
    ) -> None:
        self.config = config
        self.state_dir = state_dir
        self.binary = binary
        self.report: Reporter = report or (lambda _msg: None)
        self.port = 0
        self._pid: int | None = None
        """The server's pid, which leads its own process group; None when not started."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.state_dir / "prometheus.yml"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "prometheus.log"

    def __enter__(self) -> Prometheus:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self, *, timeout: float = 60.0) -> None:
        """Write and check the configuration, start the server, return once it is ready.

        Whatever ends the start early (not ready in time, an exit, Ctrl-C during the wait)
        stops the server's whole process group before it propagates."""
        binary = self.binary or ensure_prometheus(
            self.report, kubernetes_discovery=needs_kubernetes_discovery(self.config)
        )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(yaml.safe_dump(dict(self.config), sort_keys=False))
        self._check_config(binary)
        self.port = free_port()
        try:
            self._pid = processes.spawn(
                [
                    str(binary),
                    f"--config.file={self.config_file}",
                    f"--storage.tsdb.path={self.state_dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--web.enable-lifecycle",
                ],
                log_path=self.log_file,
                cwd=self.state_dir,
            )
            deadline = time.monotonic() + timeout
            while not self._ready():
                if not processes.pid_alive(self._pid):
                    raise PrometheusError(
                        f"prometheus exited at start:\n{processes.log_tail(self.log_file, 20)}"
                    )
                if time.monotonic() > deadline:
                    raise PrometheusError(
                        f"prometheus not ready after {timeout:.0f}s:\n"
                        f"{processes.log_tail(self.log_file, 20)}"
                    )
                time.sleep(0.2)
        except BaseException:
            self.stop()
            raise
        self.report(f"prometheus ready on {self.url} (log {self.log_file})")

    def stop(self) -> None:
        """End the server's process group (SIGTERM, then SIGKILL); a no-op when not started."""
        pid, self._pid = self._pid, None
        if pid is not None:
            processes.terminate(pid)

    def targets(self) -> list[dict[str, Any]]:
        """The active targets: labels, `scrapePool` (the job), `health`, `lastError`, ..."""
        data = self._api("/api/v1/targets", {"state": "active"})
        return list(data["activeTargets"])

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result (`metric` labels and `value` per series)."""
        data = self._api("/api/v1/query", {"query": expr})
        return list(data["result"])

    def _check_config(self, binary: Path) -> None:
        promtool = binary.with_name("promtool")
        command = str(promtool) if promtool.is_file() else shutil.which("promtool")
        if command is None:
            return  # prometheus itself refuses a bad file at start, with less detail
        result = subprocess.run(
            [command, "check", "config", str(self.config_file)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise PrometheusError(
                f"promtool rejects {self.config_file}:\n{result.stdout}{result.stderr}"
            )

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:  # noqa: S310
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def _api(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            raise PrometheusError(f"GET {path} answered {exc.code}: {exc.read()[:500]!r}") from exc
        if body.get("status") != "success":
            raise PrometheusError(f"GET {path}: {body.get('errorType')}: {body.get('error')}")
        data: dict[str, Any] = body["data"]
        return data
