"""The real node's configuration builders: what containerd, the CNI plugins, kubelet and
kube-proxy are told, and the firewall rules set and removed."""

from __future__ import annotations

import ipaddress
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from moorage_dev.realnode_configs import (
    GUARD_COMMENT,
    NodeNetwork,
    NodePaths,
    build_address_guard,
    build_cni_conflist,
    build_containerd_config,
    build_forward_guard,
    build_guard_cleanup,
    build_kube_chain_cleanup,
    build_kube_proxy_config,
    build_kubelet_args,
    build_kubelet_config,
    build_kubernetes_endpoints,
    build_socat_args,
)

NETWORK = NodeNetwork(bridge="moorage0", pod_cidr="10.250.0.0/24", service_cidr="10.96.0.0/16")
PATHS = NodePaths(Path("/state/node"))


def test_the_bridge_takes_the_first_address_of_the_pod_range() -> None:
    assert NETWORK.bridge_ip == "10.250.0.1"
    assert NETWORK.bridge_address == "10.250.0.1/24"
    other = NodeNetwork(bridge="b", pod_cidr="172.31.7.0/24", service_cidr="10.96.0.0/16")
    assert other.bridge_ip == "172.31.7.1"


def _containerd() -> dict[str, Any]:
    return tomllib.loads(build_containerd_config(PATHS, pause_image="moorage.dev/pause:abc"))


def test_containerd_keeps_everything_under_the_node_folder() -> None:
    config = _containerd()
    assert config["version"] == 2
    for key in ("root", "state"):
        assert Path(config[key]).is_relative_to(PATHS.root)
    assert config["grpc"]["address"] == str(PATHS.containerd_socket)
    assert Path(config["ttrpc"]["address"]).is_relative_to(PATHS.root)
    runc = config["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["runc"]
    assert Path(runc["options"]["Root"]).is_relative_to(PATHS.root)


def test_containerd_cri_settings_that_this_machine_needs() -> None:
    cri = _containerd()["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["sandbox_image"] == "moorage.dev/pause:abc"
    assert cri["netns_mounts_under_state_dir"] is True
    assert cri["containerd"]["snapshotter"] == "overlayfs"
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"]["SystemdCgroup"] is False
    assert cri["cni"]["bin_dir"] == "/usr/lib/cni"
    assert cri["cni"]["conf_dir"] == str(PATHS.cni_conf_dir)


def test_pods_get_no_default_route_and_no_masquerading() -> None:
    config = json.loads(build_cni_conflist(NETWORK, PATHS))
    [bridge] = config["plugins"]
    assert bridge["type"] == "bridge"
    assert bridge["bridge"] == "moorage0"
    assert bridge["isGateway"] is True
    assert bridge["isDefaultGateway"] is False
    assert bridge["ipMasq"] is False
    ipam = bridge["ipam"]
    assert ipam["type"] == "host-local"
    assert ipam["ranges"] == [[{"subnet": "10.250.0.0/24", "gateway": "10.250.0.1"}]]
    destinations = [r["dst"] for r in ipam["routes"]]
    assert destinations == ["10.96.0.0/16"]
    assert all(ipaddress.ip_network(d).prefixlen > 0 for d in destinations)
    assert Path(ipam["dataDir"]).is_relative_to(PATHS.root)


def _kubelet() -> dict[str, Any]:
    return yaml.safe_load(
        build_kubelet_config(
            NETWORK,
            PATHS,
            ca_file=Path("/pki/ca.crt"),
            cert_file=Path("/pki/kubelet-serving.crt"),
            key_file=Path("/pki/kubelet-serving.key"),
            healthz_port=12345,
            cluster_domain="cluster.local",
        )
    )


def test_kubelet_uses_cgroupfs_our_containerd_and_the_bridge_address() -> None:
    config = _kubelet()
    assert config["kind"] == "KubeletConfiguration"
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["failSwapOn"] is False
    assert config["containerRuntimeEndpoint"] == f"unix://{PATHS.containerd_socket}"
    assert config["address"] == "10.250.0.1"
    assert config["clusterDNS"] == ["10.250.0.1"]
    assert config["clusterDomain"] == "cluster.local"
    assert config["healthzBindAddress"] == "127.0.0.1"
    assert config["readOnlyPort"] == 0
    assert Path(config["podLogsDir"]).is_relative_to(PATHS.root)
    assert Path(config["volumePluginDir"]).is_relative_to(PATHS.root)


def test_kubelet_authenticates_client_certificates_and_asks_the_apiserver() -> None:
    config = _kubelet()
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["authentication"]["webhook"]["enabled"] is True
    assert config["authentication"]["x509"]["clientCAFile"] == "/pki/ca.crt"
    assert config["authorization"]["mode"] == "Webhook"
    assert config["tlsCertFile"] == "/pki/kubelet-serving.crt"


def test_kubelet_flags_name_the_node_its_address_labels_and_root() -> None:
    args = build_kubelet_args(
        kubelet=Path("/bin/kubelet"),
        config=PATHS.kubelet_config,
        kubeconfig=Path("/state/kubelet.kubeconfig"),
        root_dir=PATHS.kubelet_root,
        node_name="real-node-0",
        node_ip="10.250.0.1",
        labels={"moorage.dev/node": "real", "a": "b"},
    )
    assert args[0] == "/bin/kubelet"
    assert "--hostname-override=real-node-0" in args
    assert "--node-ip=10.250.0.1" in args
    assert f"--root-dir={PATHS.kubelet_root}" in args
    assert "--node-labels=a=b,moorage.dev/node=real" in args


def test_kube_proxy_changes_no_sysctl_and_opens_node_ports_on_the_bridge_only() -> None:
    config = yaml.safe_load(
        build_kube_proxy_config(
            NETWORK,
            kubeconfig=Path("/state/kube-proxy.kubeconfig"),
            node_name="real-node-0",
            healthz_port=1,
            metrics_port=2,
        )
    )
    assert config["mode"] == "iptables"
    assert config["iptables"]["localhostNodePorts"] is False
    assert config["nodePortAddresses"] == ["10.250.0.1/32"]
    assert config["clusterCIDR"] == "10.250.0.0/24"
    assert config["hostnameOverride"] == "real-node-0"
    conntrack = config["conntrack"]
    assert conntrack["maxPerCore"] == 0
    assert conntrack["min"] == 0
    assert all(
        conntrack[k] == "0s"
        for k in ("tcpEstablishedTimeout", "tcpCloseWaitTimeout", "udpTimeout", "udpStreamTimeout")
    )
    assert config["healthzBindAddress"] == "127.0.0.1:1"
    assert config["metricsBindAddress"] == "127.0.0.1:2"


@pytest.mark.parametrize(
    ("was_on", "expected"),
    [
        pytest.param(
            True,
            [
                ["-i", "moorage0", "!", "-o", "moorage0"],
                ["!", "-i", "moorage0", "-o", "moorage0"],
            ],
            id="forwarding-was-on-only-the-bridge-is-fenced",
        ),
        pytest.param(
            False,
            [
                ["-i", "moorage0", "!", "-o", "moorage0"],
                ["!", "-i", "moorage0", "-o", "moorage0"],
                ["!", "-i", "moorage0"],
            ],
            id="forwarding-was-off-nothing-else-is-forwarded",
        ),
    ],
)
def test_forward_guard_drops_what_would_leave_the_bridge(
    was_on: bool, expected: list[list[str]]
) -> None:
    rules = build_forward_guard(NETWORK, forwarding_was_on=was_on)
    assert [r[: r.index("-m")] for r in rules] == expected
    for rule in rules:
        assert rule[-2:] == ["-j", "DROP"]
        assert GUARD_COMMENT in rule


def test_address_guard_drops_what_other_hosts_send_to_the_bridge_and_the_pods() -> None:
    assert build_address_guard(NETWORK) == [
        [
            *("-d", "10.250.0.0/24", "!", "-i", "moorage0"),
            *("-m", "addrtype", "!", "--src-type", "LOCAL"),
            *("-m", "comment", "--comment", GUARD_COMMENT),
            *("-j", "DROP"),
        ]
    ]


MANGLE = f"""# Generated by iptables-save v1.8.9 (nf_tables)
*mangle
:PREROUTING ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:KUBE-IPTABLES-HINT - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
-A PREROUTING -d 10.1.0.0/16 -j ACCEPT
-A PREROUTING -d 10.250.0.0/24 ! -i moorage0 -m addrtype ! --src-type LOCAL -m comment --comment "{GUARD_COMMENT}" -j DROP
-A FORWARD -s 10.1.0.0/16 -j ACCEPT
-A FORWARD ! -i moorage0 -m comment --comment "{GUARD_COMMENT}" -j DROP
-A FORWARD -i moorage0 ! -o moorage0 -m comment --comment "{GUARD_COMMENT}" -j DROP
COMMIT
"""

NAT = """*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-NPX46M4PTMTKRN6Y - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -j DOCKER
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "default/kubernetes:https cluster IP" -m tcp --dport 443 -j KUBE-SVC-NPX46M4PTMTKRN6Y
COMMIT
"""


def test_guard_cleanup_deletes_our_rules_and_nothing_else() -> None:
    comment = ["-m", "comment", "--comment", GUARD_COMMENT]
    address = ["-d", "10.250.0.0/24", "!", "-i", "moorage0", "-m", "addrtype"]
    assert build_guard_cleanup(MANGLE) == [
        ["-D", "PREROUTING", *address, "!", "--src-type", "LOCAL", *comment, "-j", "DROP"],
        ["-D", "FORWARD", "!", "-i", "moorage0", *comment, "-j", "DROP"],
        ["-D", "FORWARD", "-i", "moorage0", "!", "-o", "moorage0", *comment, "-j", "DROP"],
    ]


def test_kube_chain_cleanup_unhooks_flushes_then_deletes_every_kube_chain() -> None:
    commands = build_kube_chain_cleanup(NAT)
    portals = ["-m", "comment", "--comment", "kubernetes service portals"]
    postrouting = ["-m", "comment", "--comment", "kubernetes postrouting rules"]
    assert [c for c in commands if c[0] == "-D"] == [
        ["-D", "PREROUTING", *portals, "-j", "KUBE-SERVICES"],
        ["-D", "OUTPUT", *portals, "-j", "KUBE-SERVICES"],
        ["-D", "POSTROUTING", *postrouting, "-j", "KUBE-POSTROUTING"],
    ]
    chains = ["KUBE-MARK-MASQ", "KUBE-POSTROUTING", "KUBE-SERVICES", "KUBE-SVC-NPX46M4PTMTKRN6Y"]
    assert [c for c in commands if c[0] == "-F"] == [["-F", c] for c in chains]
    assert [c for c in commands if c[0] == "-X"] == [["-X", c] for c in chains]
    # Every unhook comes before any flush, every flush before any delete.
    kinds = [c[0] for c in commands]
    assert kinds == sorted(kinds, key=["-D", "-F", "-X"].index)
    assert not any("DOCKER" in c for command in commands for c in command)


def test_kube_chain_cleanup_of_a_clean_table_does_nothing() -> None:
    assert build_kube_chain_cleanup("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n") == []
    assert build_guard_cleanup("*mangle\n:FORWARD ACCEPT [0:0]\nCOMMIT\n") == []


def test_the_kubernetes_service_points_at_the_forwarder_on_the_bridge() -> None:
    endpoint_slice, endpoints = build_kubernetes_endpoints(NETWORK, port=6443)
    assert endpoint_slice["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes"
    assert endpoint_slice["endpoints"][0]["addresses"] == ["10.250.0.1"]
    assert endpoint_slice["ports"] == [{"name": "https", "port": 6443, "protocol": "TCP"}]
    assert endpoints["subsets"][0]["addresses"] == [{"ip": "10.250.0.1"}]
    assert endpoints["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"] == "true"


def test_the_forwarder_listens_on_the_bridge_and_targets_loopback() -> None:
    args = build_socat_args(socat="socat", listen_ip="10.250.0.1", listen_port=6443, target_port=9)
    assert args == ["socat", "TCP-LISTEN:6443,bind=10.250.0.1,reuseaddr,fork", "TCP:127.0.0.1:9"]
