"""A real Kubernetes control plane on 127.0.0.1 for the tests and the demo.

etcd, kube-apiserver (RBAC, service-account tokens, our generated certificates),
kube-controller-manager (Deployments → ReplicaSets → Pods, garbage collection, service-account
tokens), kube-scheduler and kwok, which simulates one fake node and moves the pods scheduled on it
to Running/Ready. Every process runs in its own session so that `stop()` can end its whole group;
the state directory holds certificates, kubeconfigs, logs, etcd's data and `state.json` (ports and
pids), so a later `moorage-dev cluster down` or `status` finds a cluster that `up` started.

With `real_node=True` one real node (`realnode.RealNode`: containerd, kubelet, kube-proxy, CoreDNS
on a bridge) joins beside the fake one, which is then tainted so that unpinned pods land on the
real node. Its start overlaps the control plane's: containerd starts with etcd, the node's
processes as soon as the apiserver is ready, and every readiness wait runs together.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from moorage_dev.binaries import cache_root, ensure_binaries
from moorage_dev.mounts import unmount_all_under
from moorage_dev.pauseimage import PauseImageError
from moorage_dev.pki import Pki, write_kubeconfigs, write_node_pki, write_pki
from moorage_dev.ports import free_port as free_port  # re-exported: callers take it from here
from moorage_dev.ports import is_port_open as is_port_open
from moorage_dev.processes import log_tail, pid_alive, pid_runs, spawn, terminate
from moorage_dev.realnode import RealNode, RealNodeError
from moorage_dev.realnode_configs import NodeNetwork, build_kubernetes_endpoints

Reporter = Callable[[str], None]

NODE_NAME = "kwok-node-0"
# Room for thousands of Services (the scale benchmark creates one per MCPServer).
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
_START_ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
DEFAULT_NODE_PODS = 1000


@dataclass(frozen=True)
class Tuning:
    """What a benchmark changes in the control plane: the fake node's pod capacity and extra
    flags per process (appended, so a later flag overrides a default one)."""

    node_pods: int = DEFAULT_NODE_PODS
    flags: dict[str, tuple[str, ...]] = field(default_factory=dict)


class ControlPlaneError(RuntimeError):
    """The control plane did not start (or stop); the message points at the log to read."""


def default_state_dir() -> Path:
    """`$MOORAGE_STATE_DIR`, else the cache folder's `cluster/`."""
    explicit = os.environ.get("MOORAGE_STATE_DIR")
    return Path(explicit) if explicit else cache_root() / "cluster"


@dataclass(frozen=True, slots=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int

    @classmethod
    def allocate(cls) -> Ports:
        ports: set[int] = set()
        while len(ports) < 6:
            ports.add(free_port())
        return cls(*sorted(ports))


def _real_node_is_live(state_dir: Path) -> bool:
    """Whether the control plane recorded in `state_dir` has a real node with a live process."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        plane = ControlPlane.load(state_dir)
        return plane is not None and plane.real_node is not None and plane.real_node.is_live()
    return False


def real_node_problems(state_dir: Path) -> list[str]:
    """Why a real node cannot start here now with `state_dir` (empty when it can)."""
    node = RealNode(state_dir, service_cidr=SERVICE_CIDR)
    return node.host_problems(is_live=_real_node_is_live)


class ControlPlane:
    """Start, inspect and stop the local control plane kept in `state_dir`."""

    def __init__(
        self,
        state_dir: Path,
        *,
        binaries: dict[str, Path] | None = None,
        report: Reporter | None = None,
        real_node: bool = False,
        tuning: Tuning | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.tuning = tuning or Tuning()
        self.report: Reporter = report or (lambda _msg: None)
        self._binaries = binaries
        self.ports: Ports | None = None
        self.pids: dict[str, int] = {}
        self._argv: dict[str, list[str]] = {}
        self.pki = Pki(state_dir / "pki")
        self.want_real_node = real_node
        # Set by start() (or load()) when the control plane has a real node.
        self.real_node: RealNode | None = None

    # -- paths ------------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (client certificate in `system:masters`)."""
        return self.pki.kubeconfig("admin")

    @property
    def server(self) -> str:
        if self.ports is None:
            raise ControlPlaneError("the control plane has not been started")
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def ca_file(self) -> Path:
        return self.pki.ca_cert

    @property
    def sa_signing_key(self) -> Path:
        return self.pki.sa_key

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    def log_file(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    @property
    def binaries(self) -> dict[str, Path]:
        if self._binaries is None:
            self._binaries = ensure_binaries(report=self.report, node=self.want_real_node)
        return self._binaries

    # -- state ------------------------------------------------------------------------------

    def _save_state(self) -> None:
        state = {
            "ports": asdict(self.ports) if self.ports else None,
            "pids": self.pids,
            "binaries": {k: str(v) for k, v in self.binaries.items()},
            "argv": self._argv,
            "real_node": self.real_node.to_state() if self.real_node else None,
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    @classmethod
    def load(cls, state_dir: Path, *, report: Reporter | None = None) -> ControlPlane | None:
        """The control plane recorded in `state_dir`, or None when there is none."""
        path = state_dir / "state.json"
        if not path.exists():
            return None
        state = json.loads(path.read_text())
        plane = cls(
            state_dir,
            binaries={k: Path(v) for k, v in state.get("binaries", {}).items()},
            report=report,
        )
        if state.get("ports"):
            plane.ports = Ports(**state["ports"])
        plane.pids = {k: int(v) for k, v in state.get("pids", {}).items()}
        plane._argv = state.get("argv", {})
        if state.get("real_node"):
            plane.want_real_node = True
            plane.real_node = RealNode.from_state(state_dir, state["real_node"], report=report)
        return plane

    def running(self) -> dict[str, bool]:
        """Which of our processes are alive (the real node's too)."""
        alive = {
            name: pid_runs(self.pids[name], str(self.binaries.get(name, name)))
            for name in _START_ORDER
            if name in self.pids
        }
        if self.real_node is not None:
            alive.update(self.real_node.running())
        return alive

    def all_pids(self) -> dict[str, int]:
        return {**self.pids, **(self.real_node.pids if self.real_node else {})}

    def is_healthy(self) -> bool:
        alive = self.running()
        expected = len(_START_ORDER) + (len(self.real_node.argv) if self.real_node else 0)
        if len(alive) != expected or not all(alive.values()):
            return False
        try:
            return self._get_text("/readyz") == "ok"
        except (OSError, ControlPlaneError):
            return False

    # -- HTTP to the apiserver (sync: used by the CLI and session fixtures) -------------------

    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        ctx.load_cert_chain(str(self.pki.cert("admin")), str(self.pki.key("admin")))
        return ctx

    def _request(self, method: str, path: str, body: Any = None, *, timeout: float = 10.0) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(  # noqa: S310 - our own https apiserver
            self.server + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        with urllib.request.urlopen(req, context=self._ssl(), timeout=timeout) as resp:  # noqa: S310
            raw = resp.read()
        return json.loads(raw) if raw else None

    def _get_text(self, path: str) -> str:
        req = urllib.request.Request(self.server + path)  # noqa: S310
        with urllib.request.urlopen(req, context=self._ssl(), timeout=5) as resp:  # noqa: S310
            return str(resp.read().decode())

    # -- processes --------------------------------------------------------------------------

    def _commands(self, ports: Ports) -> dict[str, list[str]]:
        b = {k: str(v) for k, v in self.binaries.items()}
        pki = self.pki
        etcd_data = self.state_dir / "etcd"
        commands = {
            "etcd": [
                b["etcd"],
                "--name=default",
                f"--data-dir={etcd_data}",
                f"--listen-client-urls=http://127.0.0.1:{ports.etcd_client}",
                f"--advertise-client-urls=http://127.0.0.1:{ports.etcd_client}",
                f"--listen-peer-urls=http://127.0.0.1:{ports.etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{ports.etcd_peer}",
                f"--initial-cluster=default=http://127.0.0.1:{ports.etcd_peer}",
                "--unsafe-no-fsync=true",
                "--quota-backend-bytes=4294967296",
                "--log-level=warn",
            ],
            "kube-apiserver": [
                b["kube-apiserver"],
                f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={ports.apiserver}",
                f"--tls-cert-file={pki.cert('apiserver')}",
                f"--tls-private-key-file={pki.key('apiserver')}",
                f"--client-ca-file={pki.ca_cert}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-account-issuer={SA_ISSUER}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",
                "--enable-priority-and-fairness=false",
                f"--kubelet-client-certificate={pki.cert('apiserver-kubelet-client')}",
                f"--kubelet-client-key={pki.key('apiserver-kubelet-client')}",
                "--kubelet-preferred-address-types=InternalIP",
                "--profiling=false",
                "--event-ttl=1h",
                # PodTemplates bypass the watch cache, so tests can make a watch hit a compacted
                # etcd revision and get a real 410 Gone.
                "--watch-cache-sizes=podtemplates#0",
                "--v=1",
            ],
            "kube-controller-manager": [
                b["kube-controller-manager"],
                f"--kubeconfig={pki.kubeconfig('controller-manager')}",
                f"--authentication-kubeconfig={pki.kubeconfig('controller-manager')}",
                f"--authorization-kubeconfig={pki.kubeconfig('controller-manager')}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports.controller_manager}",
                f"--root-ca-file={pki.ca_cert}",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--cluster-signing-cert-file={pki.ca_cert}",
                f"--cluster-signing-key-file={pki.key('ca')}",
                "--use-service-account-credentials=true",
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller",
                "--leader-elect=false",
                "--concurrent-deployment-syncs=10",
                "--concurrent-replicaset-syncs=10",
                "--concurrent-statefulset-syncs=10",
                "--concurrent-gc-syncs=40",
                "--v=1",
            ],
            "kube-scheduler": [
                b["kube-scheduler"],
                f"--kubeconfig={pki.kubeconfig('scheduler')}",
                f"--authentication-kubeconfig={pki.kubeconfig('scheduler')}",
                f"--authorization-kubeconfig={pki.kubeconfig('scheduler')}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports.scheduler}",
                "--leader-elect=false",
                "--v=1",
            ],
            "kwok": [
                b["kwok"],
                f"--kubeconfig={pki.kubeconfig('kwok')}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--node-ip=127.0.0.1",
                f"--node-port={ports.kwok}",
                f"--server-address=127.0.0.1:{ports.kwok}",
                f"--tls-cert-file={pki.cert('kwok')}",
                f"--tls-private-key-file={pki.key('kwok')}",
                f"--cidr={POD_CIDR.replace('0.0/16', '0.1/16')}",
                # Heartbeat through a node Lease: without it the node turns NotReady after a
                # minute and kwok never makes the pods that were on it ready again.
                "--node-lease-duration-seconds=40",
                f"--config={self.state_dir / 'kwok.yaml'}",
            ],
        }
        for name, extra in self.tuning.flags.items():
            commands[name].extend(extra)
        return commands

    def _spawn(self, name: str, argv: list[str]) -> None:
        self.pids[name] = spawn(argv, log_path=self.log_file(name), cwd=self.state_dir)
        self._argv[name] = argv

    def _wait(self, name: str, check: Callable[[], bool], *, timeout: float) -> None:
        self._wait_all({name: check}, timeout=timeout)

    def _wait_all(self, checks: dict[str, Callable[[], bool]], *, timeout: float) -> None:
        """Poll every check in turn until all pass; fail on the first process that exits."""
        pending = dict(checks)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for name, check in list(pending.items()):
                pid = self.all_pids().get(name)
                if pid is not None and not pid_alive(pid):
                    raise ControlPlaneError(
                        f"{name} exited during start-up; see {self.log_file(name)}:\n"
                        + log_tail(self.log_file(name))
                    )
                with contextlib.suppress(OSError, ValueError, urllib.error.URLError):
                    if check():
                        del pending[name]
            if pending:
                time.sleep(0.05)
        if pending:
            name = next(iter(pending))
            raise ControlPlaneError(
                f"{', '.join(pending)} not ready after {timeout:.0f}s; see {self.log_file(name)}:\n"
                + log_tail(self.log_file(name))
            )

    def _insecure_healthz(self, port: int) -> bool:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        url = f"https://127.0.0.1:{port}/healthz"
        with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
            return bool(resp.status == 200)

    def _etcd_healthy(self) -> bool:
        assert self.ports is not None
        url = f"http://127.0.0.1:{self.ports.etcd_client}/health"
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(json.loads(resp.read()).get("health") == "true")

    def _apiserver_ready(self) -> bool:
        return self._get_text("/readyz") == "ok"

    def _write_kwok_config(self) -> None:
        # kwok's own defaults for node and pod stages (ready, running, deleted) apply when the
        # configuration lists none; the file only has to exist so kwok does not read ~/.kwok.
        (self.state_dir / "kwok.yaml").write_text(
            "apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\n"
        )

    def _fake_node(self) -> dict[str, Any]:
        assert self.ports is not None
        pods = str(self.tuning.node_pods)
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE_NAME,
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": NODE_NAME,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "spec": {
                # Room for the node's pod capacity (a benchmark's thousands of pods).
                "podCIDR": (
                    "10.244.0.0/24" if self.tuning.node_pods <= DEFAULT_NODE_PODS else POD_CIDR
                ),
                # Beside a real node, pods land on the fake one only when they ask to.
                "taints": (
                    [{"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}]
                    if self.want_real_node
                    else []
                ),
            },
            "status": {
                "allocatable": {"cpu": "64", "memory": "256Gi", "pods": pods},
                "capacity": {"cpu": "64", "memory": "256Gi", "pods": pods},
                "nodeInfo": {
                    "architecture": "amd64",
                    "operatingSystem": "linux",
                    "kubeletVersion": "fake",
                    "kubeProxyVersion": "fake",
                },
            },
        }

    def _node_ready(self, name: str = NODE_NAME) -> bool:
        node = self._request("GET", f"/api/v1/nodes/{name}")
        for cond in (node.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready" and cond.get("status") == "True":
                return True
        return False

    def start(self) -> None:
        """Build what is missing, generate certificates, start every process, wait until ready."""
        started = time.monotonic()
        node: RealNode | None = None
        if self.want_real_node:
            node = RealNode(self.state_dir, service_cidr=SERVICE_CIDR, report=self.report)
            self._real_node_errors(lambda: node.check_host(is_live=_real_node_is_live))
        binaries = self.binaries
        self._clear_state_dir()
        self.ports = ports = Ports.allocate()
        write_pki(self.pki.directory, extra_apiserver_hosts=[node.bridge_ip] if node else [])
        write_kubeconfigs(self.pki, server=self.server)
        if node is not None:
            write_node_pki(
                self.pki, node_name=node.name, node_ip=node.bridge_ip, server=self.server
            )
        self._write_kwok_config()
        commands = self._commands(ports)
        what = "etcd, kube-apiserver, controller manager, scheduler and kwok"
        if node is not None:
            what += f", and a real node ({node.name} on {node.network.bridge} {node.bridge_ip})"
        self.report(f"starting {what} ({binaries['kube-apiserver'].parent})")
        try:
            if node is not None:
                self.real_node = node
                self._real_node_errors(
                    lambda: node.prepare(
                        binaries=binaries, pki=self.pki, is_live=_real_node_is_live
                    )
                )
                self._save_state()
            self._spawn("etcd", commands["etcd"])
            self._save_state()
            self._wait("etcd", self._etcd_healthy, timeout=30)
            self._spawn("kube-apiserver", commands["kube-apiserver"])
            self._save_state()
            if node is not None:
                # containerd and the pause image get ready while the apiserver starts.
                self._real_node_errors(node.await_containerd)
            self._wait("kube-apiserver", self._apiserver_ready, timeout=90)
            for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
                self._spawn(name, commands[name])
            if node is not None:
                self._real_node_errors(
                    lambda: node.start_node_processes(
                        apiserver_port=ports.apiserver, admin_kubeconfig=self.kubeconfig
                    )
                )
            self._save_state()
            self._request("POST", "/api/v1/nodes", self._fake_node())
            checks: dict[str, Callable[[], bool]] = {
                "kube-controller-manager": lambda: self._insecure_healthz(ports.controller_manager),
                "kube-scheduler": lambda: self._insecure_healthz(ports.scheduler),
                "kwok": self._node_ready,
            }
            if node is not None:
                self._create_kubernetes_endpoints(node.network)
                checks.update(node.readiness_checks(self._node_ready))
            self._wait_all(checks, timeout=90)
        except BaseException:
            self.stop()
            raise
        self.report(f"control plane ready in {time.monotonic() - started:.1f}s at {self.server}")

    @staticmethod
    def _real_node_errors(step: Callable[[], None]) -> None:
        """Run a real node step; its errors become ours, with the same one-line message."""
        try:
            step()
        except (RealNodeError, PauseImageError) as exc:
            raise ControlPlaneError(str(exc)) from exc

    def _clear_state_dir(self) -> None:
        """An empty state dir; whatever a control plane (and a cert-manager against it) recorded
        there is stopped first: deleting the record would leave its processes running unknown."""
        # certmanager builds on this module, so it is imported where it is needed.
        from moorage_dev.certmanager import stop_recorded

        stop_recorded(self, report=self.report)
        previous = ControlPlane.load(self.state_dir, report=self.report)
        if previous is not None:
            previous.stop()
        if self.state_dir.exists():
            # Never delete through a mount (a container's volume could be a host folder).
            failures = unmount_all_under(self.state_dir)
            if failures:
                raise ControlPlaneError(
                    f"cannot clear {self.state_dir}: still mounted: {', '.join(failures)}"
                )
            shutil.rmtree(self.state_dir)
        self.state_dir.mkdir(parents=True)

    def _create_kubernetes_endpoints(self, network: NodeNetwork) -> None:
        """Point the `kubernetes` Service at the apiserver's forwarder on the bridge."""
        endpoint_slice, endpoints = build_kubernetes_endpoints(network)
        self._request(
            "POST", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", endpoint_slice
        )
        self._request("POST", "/api/v1/namespaces/default/endpoints", endpoints)

    def compact_etcd(self) -> int:
        """Compact etcd at its current revision; the revision compacted.

        A watch on a kind that bypasses the watch cache (PodTemplates here) from an older
        resourceVersion then gets 410 Gone from the apiserver, as after a long disconnect.
        """
        assert self.ports is not None
        base = f"http://127.0.0.1:{self.ports.etcd_client}/v3/kv"
        status = json.loads(self._etcd_post(f"{base}/range", {"key": "AA==", "limit": 1}))
        revision = int(status["header"]["revision"])
        self._etcd_post(f"{base}/compaction", {"revision": revision, "physical": True})
        return revision

    @staticmethod
    def _etcd_post(url: str, body: dict[str, Any]) -> bytes:
        req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")  # noqa: S310
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            return bytes(resp.read())

    def restart_apiserver(self) -> None:
        """Stop kube-apiserver and start it again on the same port; wait until it is ready."""
        pid = self.pids.get("kube-apiserver")
        if pid is not None:
            terminate(pid)
        self._spawn("kube-apiserver", self._argv["kube-apiserver"])
        self._save_state()
        self._wait("kube-apiserver", self._apiserver_ready, timeout=90)

    def stop(self) -> None:
        """Stop every process we started (reverse order) and wait until they are gone; a real
        node is taken away completely (containers, mounts, firewall rules, bridge)."""
        if self.real_node is not None:
            self.real_node.stop()
        for name in reversed(_START_ORDER):
            pid = self.pids.get(name)
            if pid is not None and pid_alive(pid):
                terminate(pid)
        self.pids.clear()
        if self.state_file.exists():
            self._save_state()

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the kubectl we built against this control plane (admin credentials)."""
        return subprocess.run(
            [str(self.binaries["kubectl"]), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )
