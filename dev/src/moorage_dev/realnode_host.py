"""The machine-wide changes a real node makes, and undoing each of them.

A real node needs things that belong to the whole machine, not to its state folder: the bridge and
its address, a route to the Service range, firewall rules (the forward and address guards,
kube-proxy's and kubelet's KUBE-* chains), a few sysctls (ip_forward, and the ones kubelet sets), cgroups, the
/var/log/containers links kubelet makes, and the CNI result cache. Because of them only one real
node can run on a machine at a time: `claim_machine` records which state folder owns the machine.

Every undo is safe to run when the thing is already gone, so teardown can always run to the end.
`find_leftovers` reports whatever is still there afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from moorage_dev.filelocks import directory_lock
from moorage_dev.processes import system_env
from moorage_dev.realnode_configs import (
    CNI_NETWORK,
    GUARD_COMMENT,
    KUBE_CHAIN_PREFIX,
    NodeNetwork,
    build_address_guard,
    build_forward_guard,
    build_guard_cleanup,
    build_kube_chain_cleanup,
)

CLAIM_DIR = Path("/run/moorage-dev")
IP_FORWARD_SYSCTL = "net/ipv4/ip_forward"
BRIDGE_NF_CALL = "net/bridge/bridge-nf-call-iptables"
_IPTABLES = ("iptables", "ip6tables")
_TABLES = ("filter", "nat", "mangle")
CONTAINER_LOG_LINKS = Path("/var/log/containers")
CNI_RESULTS = Path("/var/lib/cni/results")
# Host folders kubelet, containerd's shims and the CNI plugins create whatever their root dirs
# say (kubelet's device-plugin socket path is fixed, libcni caches results in /var/lib/cni, the
# shims put their sockets in /run/containerd/s). The ones that were absent before the node are
# removed again when they hold nothing else.
HOST_DIRS = (
    Path("/var/lib/kubelet"),
    Path("/var/log/containers"),
    Path("/var/lib/cni"),
    Path("/run/containerd"),
    Path("/usr/libexec/kubernetes"),
)
KUBELET_DEVICE_PLUGIN_SOCKET = Path("/var/lib/kubelet/device-plugins/kubelet.sock")


class HostError(RuntimeError):
    """A machine-wide change could not be made; the message says which and why."""


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(args), capture_output=True, text=True, check=False, env=system_env(), timeout=60
    )
    if check and proc.returncode != 0:
        raise HostError(f"{' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()}")
    return proc


# -- the claim on the machine -----------------------------------------------------------------


def already_running_message(owner: Path) -> str:
    return (
        f"a real node is already running on this machine (state dir {owner}); only one can run "
        f"at a time: stop it with `moorage-dev --state-dir {owner} cluster down`"
    )


def claim_owner(directory: Path = CLAIM_DIR) -> Path | None:
    """The state folder of the real node that holds the machine, if any."""
    with contextlib.suppress(OSError, ValueError, KeyError):
        return Path(json.loads((directory / "real-node.json").read_text())["state_dir"])
    return None


def claim_machine(
    state_dir: Path, *, is_live: Callable[[Path], bool], directory: Path = CLAIM_DIR
) -> Path | None:
    """Record `state_dir` as the real node of this machine.

    Fails when another folder's real node is still live; a dead one's folder is returned so the
    caller can clean up what it left before going on.
    """
    with directory_lock(directory):
        owner = claim_owner(directory)
        if owner is not None and owner != state_dir and is_live(owner):
            raise HostError(already_running_message(owner))
        (directory / "real-node.json").write_text(json.dumps({"state_dir": str(state_dir)}))
    return owner if owner is not None and owner != state_dir else None


def release_machine(state_dir: Path, *, directory: Path = CLAIM_DIR) -> None:
    with directory_lock(directory):
        if claim_owner(directory) == state_dir:
            (directory / "real-node.json").unlink(missing_ok=True)


# -- sysctls ----------------------------------------------------------------------------------


def read_sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", name).read_text().strip()
    except OSError:
        return None


def write_sysctl(name: str, value: str) -> None:
    try:
        Path("/proc/sys", name).write_text(value + "\n")
    except OSError as exc:
        raise HostError(f"cannot set the sysctl {name} to {value}: {exc}") from exc


def restore_sysctls(saved: dict[str, str]) -> None:
    """Write back what the node found; a sysctl that cannot be written any more is left as it is
    (teardown goes on to the end; `find_leftovers` reports an ip_forward that stayed on)."""
    for name, value in saved.items():
        if read_sysctl(name) != value:
            with contextlib.suppress(HostError):
                write_sysctl(name, value)


# -- the bridge, its route and the guards ------------------------------------------------------


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def create_bridge(network: NodeNetwork) -> None:
    """The bridge with the node's address, up; IPv6 off on it (the pod network is IPv4 only)."""
    if link_exists(network.bridge):
        _run("ip", "link", "del", network.bridge)
    _run("ip", "link", "add", network.bridge, "type", "bridge")
    # Without IPv6 in the kernel there is no such sysctl, and nothing to turn off.
    with contextlib.suppress(HostError):
        write_sysctl(f"net/ipv6/conf/{network.bridge}/disable_ipv6", "1")
    _run("ip", "addr", "add", network.bridge_address, "dev", network.bridge)
    _run("ip", "link", "set", network.bridge, "up")
    # The host reaches ClusterIPs through the bridge (kube-proxy translates them to pods there).
    _run("ip", "route", "replace", network.service_cidr, "dev", network.bridge)


def delete_bridge(network: NodeNetwork) -> None:
    _run("ip", "route", "del", network.service_cidr, "dev", network.bridge, check=False)
    if link_exists(network.bridge):
        _run("ip", "link", "del", network.bridge, check=False)


def add_guards(network: NodeNetwork, *, forwarding_was_on: bool) -> None:
    """The forward guard (nothing routed off the bridge) and the address guard (nothing from
    other hosts reaches the bridge address or the pods), first in their mangle chains."""
    for rule in build_forward_guard(network, forwarding_was_on=forwarding_was_on):
        _run("iptables", "-t", "mangle", "-I", "FORWARD", *rule)
    for rule in build_address_guard(network):
        _run("iptables", "-t", "mangle", "-I", "PREROUTING", *rule)


def _save(binary: str, table: str) -> str:
    return _run(f"{binary}-save", "-t", table, check=False).stdout


def remove_iptables_rules() -> None:
    """Delete the forward and address guards, then every KUBE-* chain (kube-proxy's and kubelet's), in every
    table of both address families."""
    for command in build_guard_cleanup(_save("iptables", "mangle")):
        _run("iptables", "-t", "mangle", *command, check=False)
    for binary in _IPTABLES:
        for table in _TABLES:
            for command in build_kube_chain_cleanup(_save(binary, table)):
                _run(binary, "-w", "5", "-t", table, *command, check=False)


def leftover_iptables() -> list[str]:
    found: list[str] = []
    for binary in _IPTABLES:
        for table in _TABLES:
            for line in _save(binary, table).splitlines():
                if line.startswith(":" + KUBE_CHAIN_PREFIX):
                    found.append(f"{binary} -t {table} chain {line[1:].split()[0]}")
                elif GUARD_COMMENT in line:
                    found.append(f"{binary} -t {table} rule {line}")
    return found


# -- cgroups, logs and CNI caches ----------------------------------------------------------------


def _kubepods_cgroups() -> list[Path]:
    """Every kubelet pod cgroup folder, deepest first, in every hierarchy.

    Folders come and go while we look (runc removes a container's as it dies), so a folder that
    vanishes under the walk is simply not listed.
    """
    found: list[Path] = []
    root = Path("/sys/fs/cgroup")
    with contextlib.suppress(OSError):
        tops = [root / "kubepods"] + [h / "kubepods" for h in root.iterdir() if h.is_dir()]
        for top in tops:
            for folder, _dirs, _files in os.walk(top, onerror=lambda _err: None):
                found.append(Path(folder))
    return sorted(set(found), key=lambda p: -len(p.parts))


def kill_pod_processes() -> int:
    """SIGKILL every process in a pod cgroup (containers outlive their shim otherwise)."""
    killed = 0
    for cgroup in _kubepods_cgroups():
        with contextlib.suppress(OSError):
            for line in (cgroup / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(line), 9)
                    killed += 1
    return killed


def remove_pod_cgroups() -> list[str]:
    """rmdir the pod cgroups (only empty ones can go); the ones that stay."""
    stuck: list[str] = []
    for cgroup in _kubepods_cgroups():
        try:
            cgroup.rmdir()
        except FileNotFoundError:
            continue
        except OSError as exc:
            stuck.append(f"{cgroup}: {exc.strerror}")
    return stuck


def absent_host_dirs() -> list[str]:
    return [str(d) for d in HOST_DIRS if not d.exists()]


def remove_host_files(pod_logs: Path, *, container_ids: list[str], created_dirs: list[str]) -> None:
    """kubelet's links to our pod logs, the CNI results cached for our containers, and the host
    folders the node created (only while they hold nothing but empty folders)."""
    if CONTAINER_LOG_LINKS.is_dir():
        for link in CONTAINER_LOG_LINKS.iterdir():
            with contextlib.suppress(OSError):
                if link.is_symlink() and str(os.readlink(link)).startswith(str(pod_logs)):
                    link.unlink()
    if CNI_RESULTS.is_dir():
        for cached in CNI_RESULTS.iterdir():
            if cached.name.startswith(CNI_NETWORK + "-") or any(
                i in cached.name for i in container_ids
            ):
                cached.unlink(missing_ok=True)
    if str(KUBELET_DEVICE_PLUGIN_SOCKET.parents[1]) in created_dirs:
        KUBELET_DEVICE_PLUGIN_SOCKET.unlink(missing_ok=True)
    for directory in map(Path, created_dirs):
        if directory.is_dir():
            for folder, _dirs, _files in sorted(os.walk(directory), key=lambda w: -len(w[0])):
                with contextlib.suppress(OSError):
                    Path(folder).rmdir()


def leftover_network(network: NodeNetwork) -> list[str]:
    found: list[str] = []
    if link_exists(network.bridge):
        found.append(f"bridge {network.bridge}")
    routes = _run("ip", "route", "show", network.service_cidr, check=False).stdout.strip()
    if routes:
        found.append(f"route {routes}")
    return found
