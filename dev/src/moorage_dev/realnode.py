"""One real node beside kwok's fake one: containerd, kubelet, kube-proxy, CoreDNS on a bridge.

The control plane (`cluster.ControlPlane(state_dir, real_node=True)`) drives a `RealNode` through
its start in steps that overlap with its own start-up:

1. `check_host()` first of all: the preflight (`realnode_preflight`), one line when it fails.
2. `prepare()` before etcd starts: claim the machine (one real node at a time), make or find the
   pause image and CoreDNS, make the bridge, its route and the firewall guards, write every
   configuration, start containerd.
3. `await_containerd()` while the apiserver starts: containerd answers and has the pause image.
4. `start_node_processes()` once the apiserver is ready: kubelet, kube-proxy, the apiserver
   forwarder (socat) and CoreDNS.
5. `readiness_checks()`: what the control plane waits for, together with its own waits.

`stop()` takes everything away again, safe to run at any point of a failed start and from another
process (the state file keeps pids, recorded sysctls and paths); `find_leftovers()` lists what is
still there afterwards. Other code uses `name`, `bridge_ip`, `pod_cidr`, `import_image()` and
`ctr()`.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from moorage_dev.dns import CLUSTER_DOMAIN, dns_ready, ensure_coredns, write_corefile
from moorage_dev.mounts import mounts_under, unmount_all_under
from moorage_dev.pauseimage import ensure_pause_image, has_cached_pause_image
from moorage_dev.pki import Pki
from moorage_dev.ports import free_port
from moorage_dev.processes import (
    find_command,
    pid_alive,
    pid_runs,
    spawn,
    system_env,
    terminate,
)
from moorage_dev.realnode_configs import (
    APISERVER_FORWARD_PORT,
    KUBELET_SYSCTLS,
    NodeNetwork,
    NodePaths,
    build_cni_conflist,
    build_containerd_config,
    build_kube_proxy_config,
    build_kubelet_args,
    build_kubelet_config,
    build_socat_args,
)
from moorage_dev.realnode_host import (
    BRIDGE_NF_CALL,
    IP_FORWARD_SYSCTL,
    HostError,
    absent_host_dirs,
    add_guards,
    already_running_message,
    claim_machine,
    claim_owner,
    create_bridge,
    delete_bridge,
    kill_pod_processes,
    leftover_iptables,
    leftover_network,
    read_sysctl,
    release_machine,
    remove_host_files,
    remove_iptables_rules,
    remove_pod_cgroups,
    restore_sysctls,
    write_sysctl,
)
from moorage_dev.realnode_preflight import find_problems, gather_host_facts, preflight_message

Reporter = Callable[[str], None]

REAL_NODE_NAME = "real-node-0"
BRIDGE = "moorage0"
# Private, and far from the ranges Docker, kind and most VPNs pick.
REAL_POD_CIDR = "10.250.0.0/24"
NODE_LABELS = {"moorage.dev/node": "real"}
DNS_PORT = 53


class RealNodeError(RuntimeError):
    """The real node cannot start here or did not start; the message says what to do."""


class RealNode:
    """The real node kept in `<state_dir>/node`; see the module docstring for the life cycle."""

    def __init__(
        self,
        state_dir: Path,
        *,
        service_cidr: str,
        report: Reporter | None = None,
        name: str = REAL_NODE_NAME,
        pod_cidr: str = REAL_POD_CIDR,
        bridge: str = BRIDGE,
    ) -> None:
        self.state_dir = state_dir
        self.name = name
        self.network = NodeNetwork(bridge=bridge, pod_cidr=pod_cidr, service_cidr=service_cidr)
        self.paths = NodePaths(state_dir / "node")
        self.report: Reporter = report or (lambda _msg: None)
        self.pids: dict[str, int] = {}
        self.argv: dict[str, list[str]] = {}
        # sysctl -> the value it had before the node changed it; written back by stop().
        self.saved_sysctls: dict[str, str] = {}
        self.pause_image = ""
        self.ports: dict[str, int] = {}
        # Host folders that did not exist before the node (removed again when empty).
        self.created_dirs: list[str] = []
        # Known only to the process that prepared the node.
        self._pause_archive: Path | None = None
        self._coredns: Path | None = None
        self._commands: dict[str, list[str]] = {}
        # What stop() stopped and the sysctls it wrote back, so find_leftovers() can check them.
        self._stopped_pids: dict[str, int] = {}
        self._restored_sysctls: dict[str, str] = {}

    # -- what other code uses ---------------------------------------------------------------

    @property
    def bridge_ip(self) -> str:
        return self.network.bridge_ip

    @property
    def pod_cidr(self) -> str:
        return self.network.pod_cidr

    @property
    def containerd_socket(self) -> Path:
        return self.paths.containerd_socket

    def ctr(
        self, *args: str, check: bool = True, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        """`ctr` against this node's containerd, in the CRI's `k8s.io` namespace."""
        proc = subprocess.run(
            ["ctr", "--address", str(self.containerd_socket), "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            env=system_env(),
        )
        if check and proc.returncode != 0:
            raise RealNodeError(
                f"ctr {' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()}"
            )
        return proc

    def import_image(self, archive: Path) -> None:
        """Import an OCI or docker image archive; pods use it with imagePullPolicy Never or
        IfNotPresent. The archive must name its image (an OCI index annotation or a docker tag)."""
        self.ctr("images", "import", "--snapshotter", "overlayfs", str(archive))

    # -- state --------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "bridge": self.network.bridge,
            "pod_cidr": self.network.pod_cidr,
            "service_cidr": self.network.service_cidr,
            "pids": self.pids,
            "argv": self.argv,
            "saved_sysctls": self.saved_sysctls,
            "pause_image": self.pause_image,
            "ports": self.ports,
            "created_dirs": self.created_dirs,
        }

    @classmethod
    def from_state(
        cls, state_dir: Path, state: dict[str, Any], *, report: Reporter | None = None
    ) -> RealNode:
        node = cls(
            state_dir,
            service_cidr=state["service_cidr"],
            report=report,
            name=state["name"],
            pod_cidr=state["pod_cidr"],
            bridge=state["bridge"],
        )
        node.pids = {k: int(v) for k, v in state.get("pids", {}).items()}
        node.argv = state.get("argv", {})
        node.saved_sysctls = dict(state.get("saved_sysctls", {}))
        node.pause_image = state.get("pause_image", "")
        node.ports = {k: int(v) for k, v in state.get("ports", {}).items()}
        node.created_dirs = list(state.get("created_dirs", []))
        return node

    def log_file(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    def running(self) -> dict[str, bool]:
        return {
            name: pid_runs(pid, self.argv.get(name, [name])[0]) for name, pid in self.pids.items()
        }

    def is_live(self) -> bool:
        return any(self.running().values())

    # -- start --------------------------------------------------------------------------------

    def host_problems(self, *, is_live: Callable[[Path], bool]) -> list[str]:
        """Why this machine cannot run this node now (empty when it can); see realnode_preflight.

        `is_live(state_dir)` says whether the real node recorded there still runs: a live one
        holding the machine is a problem too.
        """
        facts = gather_host_facts(
            self.state_dir,
            socket_path=self.paths.containerd_socket,
            pause_cached=has_cached_pause_image(),
        )
        problems = find_problems(
            facts,
            pod_cidr=self.network.pod_cidr,
            service_cidr=self.network.service_cidr,
            bridge=self.network.bridge,
        )
        owner = claim_owner()
        if owner is not None and owner != self.state_dir and is_live(owner):
            problems.append(already_running_message(owner))
        return problems

    def check_host(self, *, is_live: Callable[[Path], bool]) -> None:
        """Fail at once, in one line, when this machine cannot run a real node."""
        problems = self.host_problems(is_live=is_live)
        if problems:
            raise RealNodeError(preflight_message(problems))

    def prepare(
        self, *, binaries: dict[str, Path], pki: Pki, is_live: Callable[[Path], bool]
    ) -> None:
        """Claim the machine, set up the host network, write the configs, start containerd."""
        try:
            stale = claim_machine(self.state_dir, is_live=is_live)
        except HostError as exc:
            raise RealNodeError(str(exc)) from exc
        if stale is not None:
            self.report(f"cleaning up after the real node of {stale}, which is no longer running")
            self._cleanup_stale(stale)
        pause = ensure_pause_image()
        self.pause_image = pause.name
        # Built once (a Go build) before anything starts, so no process waits for it.
        self._coredns = ensure_coredns(self.report)
        self.created_dirs = absent_host_dirs()
        for name in (IP_FORWARD_SYSCTL, BRIDGE_NF_CALL, *KUBELET_SYSCTLS):
            value = read_sysctl(name)
            if value is not None:
                self.saved_sysctls[name] = value
        try:
            create_bridge(self.network)
            add_guards(
                self.network, forwarding_was_on=self.saved_sysctls.get(IP_FORWARD_SYSCTL) == "1"
            )
        except HostError as exc:
            raise RealNodeError(f"setting up the bridge {self.network.bridge}: {exc}") from exc
        # Pods reach Services (and each other through them) only when the host forwards between
        # bridge ports; the guard keeps that forwarding on the bridge. Services between pods on the
        # same bridge need the replies to pass through iptables too.
        try:
            write_sysctl(IP_FORWARD_SYSCTL, "1")
            write_sysctl(BRIDGE_NF_CALL, "1")
        except HostError as exc:
            raise RealNodeError(str(exc)) from exc
        self._write_configs(binaries=binaries, pki=pki)
        self._spawn(
            "containerd",
            [
                find_command("containerd") or "containerd",
                "--config",
                str(self.paths.containerd_config),
            ],
        )
        self._pause_archive = pause.archive

    def _write_configs(self, *, binaries: dict[str, Path], pki: Pki) -> None:
        paths = self.paths
        for directory in (
            paths.containerd_root,
            paths.containerd_state,
            paths.cni_conf_dir,
            paths.cni_ipam_dir,
            paths.kubelet_root,
            paths.pod_logs,
            paths.runc_root,
        ):
            directory.mkdir(parents=True, exist_ok=True)
        paths.containerd_config.write_text(
            build_containerd_config(paths, pause_image=self.pause_image)
        )
        (paths.cni_conf_dir / "10-moorage.conflist").write_text(
            build_cni_conflist(self.network, paths)
        )
        self.ports = {
            "kubelet-healthz": free_port(),
            "kube-proxy-healthz": free_port(),
            "kube-proxy-metrics": free_port(),
        }
        paths.kubelet_config.write_text(
            build_kubelet_config(
                self.network,
                paths,
                ca_file=pki.ca_cert,
                cert_file=pki.cert("kubelet-serving"),
                key_file=pki.key("kubelet-serving"),
                healthz_port=self.ports["kubelet-healthz"],
                cluster_domain=CLUSTER_DOMAIN,
            )
        )
        paths.kube_proxy_config.write_text(
            build_kube_proxy_config(
                self.network,
                kubeconfig=pki.kubeconfig("kube-proxy"),
                node_name=self.name,
                healthz_port=self.ports["kube-proxy-healthz"],
                metrics_port=self.ports["kube-proxy-metrics"],
            )
        )
        self._commands = {
            "kubelet": build_kubelet_args(
                kubelet=binaries["kubelet"],
                config=paths.kubelet_config,
                kubeconfig=pki.kubeconfig("kubelet"),
                root_dir=paths.kubelet_root,
                node_name=self.name,
                node_ip=self.bridge_ip,
                labels=NODE_LABELS,
            ),
            "kube-proxy": [
                str(binaries["kube-proxy"]),
                f"--config={paths.kube_proxy_config}",
                "--v=1",
            ],
        }

    def _spawn(self, name: str, argv: list[str]) -> None:
        self.pids[name] = spawn(
            argv, log_path=self.log_file(name), cwd=self.state_dir, env=system_env()
        )
        self.argv[name] = argv

    def _containerd_ready(self) -> bool:
        if not self.paths.containerd_socket.exists():
            return False
        return self.ctr("version", check=False, timeout=5).returncode == 0

    def await_containerd(self) -> None:
        """containerd answers and holds the pause image (runs while the apiserver starts)."""
        self.wait_for("containerd", self._containerd_ready, timeout=30)
        assert self._pause_archive is not None, "prepare() comes first"
        self.import_image(self._pause_archive)

    def start_node_processes(self, *, apiserver_port: int, admin_kubeconfig: Path) -> None:
        """Once the apiserver is ready: kubelet, kube-proxy, the forwarder and CoreDNS."""
        for name in ("kubelet", "kube-proxy"):
            self._spawn(name, self._commands[name])
        socat = find_command("socat") or "socat"
        self._spawn(
            "apiserver-forwarder",
            build_socat_args(
                socat=socat,
                listen_ip=self.bridge_ip,
                listen_port=APISERVER_FORWARD_PORT,
                target_port=apiserver_port,
            ),
        )
        corefile = write_corefile(
            self.paths.corefile_dir,
            bind_ip=self.bridge_ip,
            port=DNS_PORT,
            kubeconfig=admin_kubeconfig,
            reverse_cidrs=[self.network.service_cidr, self.network.pod_cidr],
            domain=CLUSTER_DOMAIN,
        )
        assert self._coredns is not None, "prepare() comes first"
        self._spawn("coredns", [str(self._coredns), "-conf", str(corefile)])

    def readiness_checks(self, node_ready: Callable[[str], bool]) -> dict[str, Callable[[], bool]]:
        """Process name -> a check that passes once it serves; the caller polls them together."""
        checks: dict[str, Callable[[], bool]] = {
            "kubelet": lambda: node_ready(self.name),
            "kube-proxy": lambda: _http_ok(
                f"http://127.0.0.1:{self.ports['kube-proxy-healthz']}/healthz"
            ),
            "apiserver-forwarder": lambda: _port_open(self.bridge_ip, APISERVER_FORWARD_PORT),
        }
        if "coredns" in self.pids:
            checks["coredns"] = lambda: dns_ready(self.bridge_ip, DNS_PORT, domain=CLUSTER_DOMAIN)
        return checks

    def wait_for(self, name: str, check: Callable[[], bool], *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(self.pids[name]):
                raise RealNodeError(f"{name} exited during start-up; see {self.log_file(name)}")
            if check():
                return
            time.sleep(0.05)
        raise RealNodeError(f"{name} was not ready after {timeout:.0f}s; see {self.log_file(name)}")

    # -- stop ---------------------------------------------------------------------------------

    def _cleanup_stale(self, state_dir: Path) -> None:
        with contextlib.suppress(OSError, ValueError, KeyError):
            state = json.loads((state_dir / "state.json").read_text())["real_node"]
            # The claim is ours now; the dead node's machine-wide leftovers are ours to remove.
            RealNode.from_state(state_dir, state, report=self.report).stop(owns_machine=True)

    def _stop_process(self, name: str) -> None:
        pid = self.pids.get(name)
        if pid is not None and pid_runs(pid, self.argv.get(name, [name])[0]):
            terminate(pid, timeout=10)

    def _container_ids(self) -> list[str]:
        """Sandboxes and containers the CRI made (read from its folders: containerd may be gone)."""
        cri = self.paths.containerd_root / "io.containerd.grpc.v1.cri"
        return [
            entry.name
            for kind in ("sandboxes", "containers")
            if (cri / kind).is_dir()
            for entry in (cri / kind).iterdir()
        ]

    def _kill_containers(self, *, owns_machine: bool) -> None:
        """Every container and sandbox dies, whether or not containerd still answers."""
        if self.running().get("containerd"):
            tasks = self.ctr("tasks", "ls", "-q", check=False, timeout=15).stdout.split()
            for task in tasks:
                self.ctr(
                    "tasks", "kill", "--all", "--signal", "SIGKILL", task, check=False, timeout=15
                )
        # Pod cgroups are machine-wide: only the node that holds the machine may empty them.
        if owns_machine:
            kill_pod_processes()
        self._stop_process("containerd")
        for pid in self._shim_pids():
            with contextlib.suppress(ProcessLookupError):
                terminate(pid, timeout=5)
        if owns_machine:
            kill_pod_processes()

    def _shim_pids(self) -> list[int]:
        """containerd's shims for our containerd (they outlive it on purpose)."""
        marker = str(self.paths.containerd_socket).encode()
        found: list[int] = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                cmdline = (proc / "cmdline").read_bytes()
                if b"containerd-shim" in cmdline and marker in cmdline:
                    found.append(int(proc.name))
        return found

    def stop(self, *, owns_machine: bool | None = None) -> None:
        """Take away everything the node made; safe at any point and more than once.

        The machine-wide parts (firewall, bridge, sysctls, pod cgroups) are undone only by the
        node that holds the machine's claim, or by the node taking over the claim of a dead one
        (`owns_machine=True`): a node whose start failed because another one runs must not tear
        the other one down, and a node stopped before (its claim released) must not do it again
        with the values it saved then. Once the claim is released the saved sysctls and created
        folders are forgotten; the caller saves the state again. Every step runs even when an
        earlier one failed; failures are reported, and `find_leftovers()` says what stayed.
        """
        if owns_machine is None:
            owns_machine = claim_owner() == self.state_dir
        steps: list[tuple[str, Callable[[], object]]] = [
            ("stop kubelet", lambda: self._stop_process("kubelet")),
            ("kill the containers", lambda: self._kill_containers(owns_machine=owns_machine)),
            *(
                (f"stop {name}", lambda name=name: self._stop_process(name))
                for name in ("kube-proxy", "apiserver-forwarder", "coredns")
            ),
            ("unmount", self._unmount),
        ]
        if owns_machine:
            steps += [
                ("remove the firewall rules", remove_iptables_rules),
                ("delete the bridge", lambda: delete_bridge(self.network)),
                ("restore the sysctls", lambda: restore_sysctls(self.saved_sysctls)),
                ("remove the pod cgroups", remove_pod_cgroups),
                (
                    "remove host files",
                    lambda: remove_host_files(
                        self.paths.pod_logs,
                        container_ids=self._container_ids(),
                        created_dirs=self.created_dirs,
                    ),
                ),
                ("release the machine", self._release_machine),
            ]
        for what, step in steps:
            try:
                step()
            except (OSError, subprocess.SubprocessError, HostError, RealNodeError) as exc:
                self.report(f"real node teardown: could not {what}: {exc}")
        self._stopped_pids.update(self.pids)
        self.pids.clear()

    def _release_machine(self) -> None:
        release_machine(self.state_dir)
        self._restored_sysctls.update(self.saved_sysctls)
        self.saved_sysctls = {}
        self.created_dirs = []

    def _unmount(self) -> None:
        failures = unmount_all_under(self.paths.root)
        if failures:
            self.report("still mounted after the node stopped: " + ", ".join(failures))

    def find_leftovers(self) -> list[str]:
        """What the node made that is still there (empty after a clean `stop()`).

        Machine-wide things (firewall, bridge, route, ip_forward) count only while no other live
        node holds the machine: then they are that node's.
        """
        pids = {**self._stopped_pids, **self.pids}
        found = [
            f"process {name} (pid {pid})"
            for name, pid in pids.items()
            if pid_runs(pid, self.argv.get(name, [name])[0])
        ]
        found += [f"shim pid {pid}" for pid in self._shim_pids()]
        found += [f"mount {p}" for p in mounts_under(self.paths.root)]
        owner = claim_owner()
        if owner is not None and owner != self.state_dir:
            return found
        found += leftover_iptables()
        found += leftover_network(self.network)
        before = {**self._restored_sysctls, **self.saved_sysctls}.get(IP_FORWARD_SYSCTL)
        if before is not None and read_sysctl(IP_FORWARD_SYSCTL) != before:
            found.append(f"ip_forward is not back to {before}")
        return found


def _http_ok(url: str) -> bool:
    with (
        contextlib.suppress(OSError),
        urllib.request.urlopen(url, timeout=2) as resp,  # noqa: S310 - our own loopback
    ):
        return bool(resp.status == 200)
    return False


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
