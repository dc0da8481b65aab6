"""A real Kubernetes control plane on 127.0.0.1 for the tests and the demo.

etcd, kube-apiserver (RBAC, service-account tokens, our generated certificates),
kube-controller-manager (Deployments → ReplicaSets → Pods, garbage collection, service-account
tokens), kube-scheduler and kwok, which simulates one fake node and moves the pods scheduled on it
to Running/Ready. Every process runs in its own session so that `stop()` can end its whole group;
the state directory holds certificates, kubeconfigs, logs, etcd's data and `state.json` (ports and
pids), so a later `moorage-dev cluster down` or `status` finds a cluster that `up` started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from moorage_dev.binaries import cache_root, ensure_binaries
from moorage_dev.pki import Pki, write_kubeconfigs, write_pki

Reporter = Callable[[str], None]

NODE_NAME = "kwok-node-0"
# Room for thousands of Services (the scale benchmark creates one per MCPServer).
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
_START_ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


class ControlPlaneError(RuntimeError):
    """The control plane did not start (or stop); the message points at the log to read."""


def default_state_dir() -> Path:
    """`$MOORAGE_STATE_DIR`, else the cache folder's `cluster/`."""
    explicit = os.environ.get("MOORAGE_STATE_DIR")
    return Path(explicit) if explicit else cache_root() / "cluster"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie of ours counts as gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False
    return True


def _pid_runs(pid: int, binary: str) -> bool:
    """True when `pid` is alive and still the binary we started (pids get reused)."""
    if not _pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return False
    return Path(cmdline).name == Path(binary).name


def _terminate(pid: int, *, timeout: float = 15.0) -> None:
    """SIGTERM the process group of `pid`, SIGKILL what is left after `timeout`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not _pid_alive(pid):
                return
            time.sleep(0.05)


class ControlPlane:
    """Start, inspect and stop the local control plane kept in `state_dir`."""

    def __init__(
        self,
        state_dir: Path,
        *,
        binaries: dict[str, Path] | None = None,
        report: Reporter | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.report: Reporter = report or (lambda _msg: None)
        self._binaries = binaries
        self.ports: Ports | None = None
        self.pids: dict[str, int] = {}
        self._argv: dict[str, list[str]] = {}
        self.pki = Pki(state_dir / "pki")

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
            self._binaries = ensure_binaries(report=self.report)
        return self._binaries

    # -- state ------------------------------------------------------------------------------

    def _save_state(self) -> None:
        state = {
            "ports": asdict(self.ports) if self.ports else None,
            "pids": self.pids,
            "binaries": {k: str(v) for k, v in self.binaries.items()},
            "argv": self._argv,
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
        return plane

    def running(self) -> dict[str, bool]:
        """Which of our processes are alive."""
        return {
            name: _pid_runs(self.pids[name], str(self.binaries.get(name, name)))
            for name in _START_ORDER
            if name in self.pids
        }

    def is_healthy(self) -> bool:
        alive = self.running()
        if len(alive) != len(_START_ORDER) or not all(alive.values()):
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
        return {
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

    def _spawn(self, name: str, argv: list[str]) -> None:
        log_path = self.log_file(name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.state_dir,
            )
        self.pids[name] = proc.pid
        self._argv[name] = argv

    def _wait(self, name: str, check: Callable[[], bool], *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.pids.get(name)
            if pid is not None and not _pid_alive(pid):
                raise ControlPlaneError(
                    f"{name} exited during start-up; see {self.log_file(name)}:\n"
                    + self._log_tail(name)
                )
            with contextlib.suppress(OSError, ValueError, urllib.error.URLError):
                if check():
                    return
            time.sleep(0.1)
        raise ControlPlaneError(
            f"{name} was not ready after {timeout:.0f}s; see {self.log_file(name)}:\n"
            + self._log_tail(name)
        )

    def _log_tail(self, name: str, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file(name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

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
            "spec": {"podCIDR": "10.244.0.0/24"},
            "status": {
                "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
                "capacity": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
                "nodeInfo": {
                    "architecture": "amd64",
                    "operatingSystem": "linux",
                    "kubeletVersion": "fake",
                    "kubeProxyVersion": "fake",
                },
            },
        }

    def _node_ready(self) -> bool:
        node = self._request("GET", f"/api/v1/nodes/{NODE_NAME}")
        for cond in (node.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready" and cond.get("status") == "True":
                return True
        return False

    def start(self) -> None:
        """Build what is missing, generate certificates, start every process, wait until ready."""
        started = time.monotonic()
        binaries = self.binaries
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        self.state_dir.mkdir(parents=True)
        self.ports = ports = Ports.allocate()
        write_pki(self.pki.directory)
        write_kubeconfigs(self.pki, server=self.server)
        self._write_kwok_config()
        commands = self._commands(ports)
        self.report(
            f"starting etcd, kube-apiserver, controller manager, scheduler and kwok ({binaries['kube-apiserver'].parent})"
        )
        try:
            self._spawn("etcd", commands["etcd"])
            self._save_state()
            self._wait("etcd", self._etcd_healthy, timeout=30)
            self._spawn("kube-apiserver", commands["kube-apiserver"])
            self._save_state()
            self._wait("kube-apiserver", self._apiserver_ready, timeout=90)
            for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
                self._spawn(name, commands[name])
            self._save_state()
            self._request("POST", "/api/v1/nodes", self._fake_node())
            self._wait(
                "kube-controller-manager",
                lambda: self._insecure_healthz(ports.controller_manager),
                timeout=60,
            )
            self._wait(
                "kube-scheduler", lambda: self._insecure_healthz(ports.scheduler), timeout=60
            )
            self._wait("kwok", self._node_ready, timeout=60)
        except BaseException:
            self.stop()
            raise
        self.report(f"control plane ready in {time.monotonic() - started:.1f}s at {self.server}")

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
            _terminate(pid)
        self._spawn("kube-apiserver", self._argv["kube-apiserver"])
        self._save_state()
        self._wait("kube-apiserver", self._apiserver_ready, timeout=90)

    def stop(self) -> None:
        """Stop every process we started (reverse order) and wait until they are gone."""
        for name in reversed(_START_ORDER):
            pid = self.pids.get(name)
            if pid is not None and _pid_alive(pid):
                _terminate(pid)
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
