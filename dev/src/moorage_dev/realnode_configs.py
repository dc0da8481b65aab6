"""What the real node's programs are told: configuration files, flags and firewall rules.

Pure: every function here turns the node's layout (paths, names, addresses) into text, argv lists
or iptables argument lists; `realnode.py` writes them and runs the programs. The settings that
matter on a machine like ours (cgroup v1, root without CAP_SYS_RESOURCE, no route out) are
explained where they are set; docs/real-node.md has the whole picture.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# The iptables comment that marks our own rules, so teardown deletes exactly those.
GUARD_COMMENT = "moorage-dev real node: nothing forwarded off the bridge"
APISERVER_FORWARD_PORT = 6443
CNI_NETWORK = "moorage-dev"
KUBE_CHAIN_PREFIX = "KUBE-"
# What kubelet sets when it does not protect the kernel defaults (container_manager_linux.go);
# recorded before it starts and written back when the node stops.
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)


@dataclass(frozen=True, slots=True)
class NodeNetwork:
    """The node's addresses. Invariant: `pod_cidr` is a /24 or larger IPv4 network whose first
    host address is the bridge's (and the node's) address."""

    bridge: str
    pod_cidr: str
    service_cidr: str

    @property
    def bridge_ip(self) -> str:
        return str(next(ipaddress.ip_network(self.pod_cidr).hosts()))

    @property
    def bridge_address(self) -> str:
        """The bridge's address with prefix length, as `ip addr add` takes it."""
        return f"{self.bridge_ip}/{ipaddress.ip_network(self.pod_cidr).prefixlen}"


@dataclass(frozen=True, slots=True)
class NodePaths:
    """Everything the node writes lives under `root` (inside the control plane's state dir)."""

    root: Path

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd" / "state"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd" / "config.toml"

    @property
    def runc_root(self) -> Path:
        return self.root / "runc"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet.yaml"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def kube_proxy_config(self) -> Path:
        return self.root / "kube-proxy.yaml"

    @property
    def corefile_dir(self) -> Path:
        return self.root / "coredns"


def _toml_string(value: str) -> str:
    return json.dumps(value)


def build_containerd_config(paths: NodePaths, *, pause_image: str) -> str:
    """containerd 1.6 configuration (version 2) for a CRI of our own beside anything else."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return "\n".join(
        [
            "version = 2",
            f"root = {_toml_string(str(paths.containerd_root))}",
            f"state = {_toml_string(str(paths.containerd_state))}",
            # Snapshotters we never use only slow the start and log errors.
            'disabled_plugins = ["io.containerd.snapshotter.v1.aufs", '
            '"io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", '
            '"io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", '
            '"io.containerd.internal.v1.tracing"]',
            "",
            "[grpc]",
            f"  address = {_toml_string(str(paths.containerd_socket))}",
            "",
            "[ttrpc]",
            f"  address = {_toml_string(str(paths.containerd_socket) + '.ttrpc')}",
            "",
            '[plugins."io.containerd.internal.v1.opt"]',
            f"  path = {_toml_string(str(paths.root / 'containerd' / 'opt'))}",
            "",
            f"[{cri}]",
            f"  sandbox_image = {_toml_string(pause_image)}",
            # Root here lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj, and without this
            # every sandbox fails with "can't get final child's PID from pipe: EOF".
            "  restrict_oom_score_adj = true",
            "  netns_mounts_under_state_dir = true",
            "  enable_selinux = false",
            '  stream_server_address = "127.0.0.1"',
            '  stream_server_port = "0"',
            "",
            f"[{cri}.containerd]",
            '  snapshotter = "overlayfs"',
            '  default_runtime_name = "runc"',
            "",
            f"[{cri}.containerd.runtimes.runc]",
            '  runtime_type = "io.containerd.runc.v2"',
            "",
            f"[{cri}.containerd.runtimes.runc.options]",
            # kubelet drives cgroups through cgroupfs (no systemd here).
            "  SystemdCgroup = false",
            f"  Root = {_toml_string(str(paths.runc_root))}",
            "",
            f"[{cri}.cni]",
            '  bin_dir = "/usr/lib/cni"',
            f"  conf_dir = {_toml_string(str(paths.cni_conf_dir))}",
            "  max_conf_num = 1",
            "",
        ]
    )


def build_cni_conflist(network: NodeNetwork, paths: NodePaths) -> str:
    """The bridge network: pods get routes to the pod and service ranges only (no default route,
    so nothing they send can leave the machine) and no masquerading."""
    config = {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": network.bridge,
                "isGateway": True,
                "isDefaultGateway": False,
                "ipMasq": False,
                # A pod reaching itself through its own Service comes back through the bridge.
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": network.pod_cidr, "gateway": network.bridge_ip}]],
                    "routes": [{"dst": network.service_cidr}],
                    "dataDir": str(paths.cni_ipam_dir),
                },
            }
        ],
    }
    return json.dumps(config, indent=2) + "\n"


def build_kubelet_config(
    network: NodeNetwork,
    paths: NodePaths,
    *,
    ca_file: Path,
    cert_file: Path,
    key_file: Path,
    healthz_port: int,
    cluster_domain: str,
) -> str:
    """KubeletConfiguration: our containerd, cgroupfs, webhook authn/authz for the apiserver's
    client certificate, everything it writes under the node's root."""
    config: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": network.bridge_ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca_file)},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(cert_file),
        "tlsPrivateKeyFile": str(key_file),
        "clusterDNS": [network.bridge_ip],
        "clusterDomain": cluster_domain,
        "podLogsDir": str(paths.pod_logs),
        "volumePluginDir": str(paths.kubelet_root / "volume-plugins"),
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        # A shared development machine: evict nothing, collect no images (ours cannot be pulled
        # again once gone).
        "evictionHard": {
            "memory.available": "50Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "shutdownGracePeriod": "0s",
        "shutdownGracePeriodCriticalPods": "0s",
        "nodeStatusReportFrequency": "10s",
        "syncFrequency": "10s",
        "maxPods": 110,
    }
    return yaml.safe_dump(config, sort_keys=False)


def build_kubelet_args(
    *,
    kubelet: Path,
    config: Path,
    kubeconfig: Path,
    root_dir: Path,
    node_name: str,
    node_ip: str,
    labels: dict[str, str],
) -> list[str]:
    return [
        str(kubelet),
        f"--config={config}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={root_dir}",
        f"--cert-dir={root_dir / 'pki'}",
        f"--hostname-override={node_name}",
        f"--node-ip={node_ip}",
        "--node-labels=" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "--v=1",
    ]


def build_kube_proxy_config(
    network: NodeNetwork,
    *,
    kubeconfig: Path,
    node_name: str,
    healthz_port: int,
    metrics_port: int,
) -> str:
    """kube-proxy in iptables mode that changes no sysctl (every conntrack setting 0, no
    localhost node ports) and opens node ports on the bridge address only."""
    config: dict[str, Any] = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": node_name,
        "mode": "iptables",
        "clusterCIDR": network.pod_cidr,
        "detectLocalMode": "ClusterCIDR",
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "nodePortAddresses": [f"{network.bridge_ip}/32"],
        "oomScoreAdj": 0,
        "iptables": {
            "localhostNodePorts": False,
            "masqueradeAll": False,
            "syncPeriod": "30s",
            "minSyncPeriod": "0s",
        },
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
            "udpTimeout": "0s",
            "udpStreamTimeout": "0s",
        },
    }
    return yaml.safe_dump(config, sort_keys=False)


def build_forward_guard(network: NodeNetwork, *, forwarding_was_on: bool) -> list[list[str]]:
    """Rule specs for the mangle table's FORWARD chain (before any filter rule can accept).

    Pods may be routed only between themselves (a Service's address is translated to a pod's on
    the way). When forwarding was off before the node, nothing else was forwarded, and nothing else
    will be; when it was on, someone else wants it and only our bridge is fenced in.
    """
    comment = ["-m", "comment", "--comment", GUARD_COMMENT]
    bridge = network.bridge
    rules = [
        ["-i", bridge, "!", "-o", bridge, *comment, "-j", "DROP"],
        ["!", "-i", bridge, "-o", bridge, *comment, "-j", "DROP"],
    ]
    if not forwarding_was_on:
        rules.append(["!", "-i", bridge, *comment, "-j", "DROP"])
    return rules


def build_address_guard(network: NodeNetwork) -> list[list[str]]:
    """Rule specs for the mangle table's PREROUTING chain (before routing and any filter rule).

    What listens on the bridge address (kubelet, the apiserver's forwarder, CoreDNS) and the pods
    serve this machine only: a packet for the pod range that comes in on another interface and
    not from this machine (another host routing the range here) is dropped. The host's own packets
    (loopback, or any interface with a local source) and the bridge's pass.
    """
    return [
        [
            "-d",
            network.pod_cidr,
            "!",
            "-i",
            network.bridge,
            "-m",
            "addrtype",
            "!",
            "--src-type",
            "LOCAL",
            "-m",
            "comment",
            "--comment",
            GUARD_COMMENT,
            "-j",
            "DROP",
        ]
    ]


def build_guard_cleanup(save_text: str) -> list[list[str]]:
    """`iptables -t mangle` arguments deleting every guard rule (forward and address guards)
    found in `iptables-save` output."""
    commands: list[list[str]] = []
    for line in save_text.splitlines():
        if line.startswith(("-A FORWARD ", "-A PREROUTING ")) and GUARD_COMMENT in line:
            commands.append(["-D", *_split_rule(line)[1:]])
    return commands


def _split_rule(line: str) -> list[str]:
    """Split one `iptables-save` rule line into arguments (it quotes comments with spaces)."""
    return shlex.split(line)


def build_kube_chain_cleanup(save_text: str) -> list[list[str]]:
    """Arguments for one table's `iptables -t <table>` calls removing every KUBE-* chain.

    `save_text` is `iptables-save -t <table>` output. Jumps into KUBE-* chains from the built-in
    chains go first, then every KUBE-* chain is flushed, then deleted (a chain can only go once
    nothing refers to it).
    """
    chains: list[str] = []
    jumps: list[list[str]] = []
    for line in save_text.splitlines():
        if line.startswith(":"):
            name = line[1:].split()[0]
            if name.startswith(KUBE_CHAIN_PREFIX):
                chains.append(name)
        elif line.startswith("-A "):
            args = _split_rule(line)
            chain = args[1]
            if not chain.startswith(KUBE_CHAIN_PREFIX) and any(
                a.startswith(KUBE_CHAIN_PREFIX) for a in args[2:]
            ):
                jumps.append(["-D", *args[1:]])
    return [
        *jumps,
        *(["-F", chain] for chain in chains),
        *(["-X", chain] for chain in chains),
    ]


def build_kubernetes_endpoints(
    network: NodeNetwork, *, port: int = APISERVER_FORWARD_PORT
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `kubernetes` Service's EndpointSlice and Endpoints: the apiserver's forwarder on the
    bridge (the apiserver itself listens on loopback, which an endpoint may not name)."""
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {
                "kubernetes.io/service-name": "kubernetes",
                "endpointslice.kubernetes.io/managed-by": "moorage-dev",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [network.bridge_ip], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }
    endpoints = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            # The slice above is authoritative; mirroring would only make a second one.
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
        },
        "subsets": [
            {
                "addresses": [{"ip": network.bridge_ip}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            }
        ],
    }
    return slice_, endpoints


def build_socat_args(
    *, socat: str, listen_ip: str, listen_port: int, target_port: int
) -> list[str]:
    return [
        socat,
        f"TCP-LISTEN:{listen_port},bind={listen_ip},reuseaddr,fork",
        f"TCP:127.0.0.1:{target_port}",
    ]
