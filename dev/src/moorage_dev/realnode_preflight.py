"""Can this machine run a real node? One line saying exactly what is missing, before anything starts.

`gather_host_facts` looks at the machine (I/O: PATH, /proc, /sys, a test overlay mount, `ip`);
`find_problems` is pure and decides from those facts; `preflight_message` joins the problems into
the single error line `moorage-dev cluster up --real-node` prints. Missing Debian packages point
at `scripts/realnode-deps.sh`, which installs them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from moorage_dev.mounts import mount_overlay, unmount
from moorage_dev.processes import find_command

DEPS_SCRIPT = "scripts/realnode-deps.sh"
CNI_BIN_DIR = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback")
# command -> the Debian package that provides it
COMMAND_PACKAGES: dict[str, str] = {
    "containerd": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "iptables": "iptables",
    "iptables-save": "iptables",
    "ip6tables": "iptables",
    "ip6tables-save": "iptables",
    "ip": "iproute2",
    "socat": "socat",
    "conntrack": "conntrack",
}
CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
# A unix socket path longer than this does not fit sockaddr_un (108 bytes with the NUL).
MAX_SOCKET_PATH = 107


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What `find_problems` decides on. Every field is a plain observation of the machine."""

    is_root: bool
    commands: frozenset[str]
    """Names from COMMAND_PACKAGES found on PATH (or in /usr/sbin, /sbin)."""
    cni_plugins: frozenset[str]
    """Names from CNI_PLUGINS found in CNI_BIN_DIR."""
    can_compile_pause: bool
    """gcc and a static C library are there (or the pause image is cached already)."""
    has_overlay: bool
    """`overlay` is in /proc/filesystems."""
    overlay_mount_error: str | None
    """Why a test overlay mount under the state dir failed; None when it worked."""
    cgroup_version: int | None
    """1 (v1 hierarchies), 2 (unified), None when /sys/fs/cgroup holds neither."""
    capabilities: frozenset[int]
    """Effective capability numbers of this process."""
    has_br_netfilter: bool
    has_dev_kmsg: bool
    socket_path: str
    """Where containerd's socket would be."""
    networks_in_use: tuple[tuple[str, str], ...]
    """(network, device) of every IPv4 address and route on the machine."""


def find_problems(facts: HostFacts, *, pod_cidr: str, service_cidr: str, bridge: str) -> list[str]:
    """Everything that stops a real node from running here, most fundamental first."""
    problems: list[str] = []
    if not facts.is_root:
        problems.append("it must run as root (containerd, kubelet and the bridge need it)")
    missing_caps = [
        name
        for cap, name in ((CAP_NET_ADMIN, "CAP_NET_ADMIN"), (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"))
        if cap not in facts.capabilities
    ]
    if facts.is_root and missing_caps:
        problems.append(
            f"this process lacks {' and '.join(missing_caps)} (in a container: run it privileged)"
        )
    packages = sorted(
        {pkg for command, pkg in COMMAND_PACKAGES.items() if command not in facts.commands}
    )
    if set(CNI_PLUGINS) - facts.cni_plugins:
        packages.append("containernetworking-plugins")
    if not facts.can_compile_pause:
        packages.append("gcc libc6-dev")
    if packages:
        missing = sorted(
            [c for c in COMMAND_PACKAGES if c not in facts.commands]
            + [f"{CNI_BIN_DIR}/{p}" for p in CNI_PLUGINS if p not in facts.cni_plugins]
            + ([] if facts.can_compile_pause else ["gcc with a static libc"])
        )
        problems.append(
            f"missing {', '.join(missing)} (Debian packages {' '.join(sorted(set(packages)))}: "
            f"run {DEPS_SCRIPT} as root)"
        )
    if not facts.has_overlay:
        problems.append("the kernel has no overlay filesystem (modprobe overlay)")
    elif facts.overlay_mount_error is not None:
        problems.append(
            f"overlayfs does not work under the state dir ({facts.overlay_mount_error}): set "
            "MOORAGE_STATE_DIR to a folder on ext4, xfs or tmpfs"
        )
    if facts.cgroup_version is None:
        problems.append("no cgroup filesystem is mounted at /sys/fs/cgroup")
    if not facts.has_br_netfilter:
        problems.append(
            "bridge netfilter is off (modprobe br_netfilter): Services between pods need it"
        )
    if not facts.has_dev_kmsg:
        problems.append("/dev/kmsg is missing (kubelet's OOM watcher reads it)")
    if len(facts.socket_path) > MAX_SOCKET_PATH:
        problems.append(
            f"the state dir is too deep for a unix socket ({facts.socket_path}): use a shorter "
            "MOORAGE_STATE_DIR"
        )
    wanted = [ipaddress.ip_network(pod_cidr), ipaddress.ip_network(service_cidr)]
    for network, device in facts.networks_in_use:
        if device == bridge:
            continue
        with contextlib.suppress(ValueError):
            used = ipaddress.ip_network(network, strict=False)
            clash = next((w for w in wanted if w.overlaps(used)), None)
            if clash is not None and used.prefixlen > 0:
                problems.append(
                    f"{clash} is already in use on this machine ({network} on {device})"
                )
    return problems


def preflight_message(problems: Sequence[str]) -> str:
    return "cannot run a real node here: " + "; ".join(problems)


# -- gathering the facts (I/O) ------------------------------------------------------------------


def _capabilities() -> frozenset[int]:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                mask = int(line.split()[1], 16)
                return frozenset(i for i in range(64) if mask >> i & 1)
    return frozenset()


def _cgroup_version() -> int | None:
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():
        return 2
    if (root / "memory").is_dir() and (root / "cpu").exists():
        return 1
    return None


def _has_static_libc() -> bool:
    gcc = find_command("gcc") or find_command("cc")
    if gcc is None:
        return False
    out = subprocess.run(
        [gcc, "-print-file-name=libc.a"], capture_output=True, text=True, check=False
    )
    found = out.stdout.strip()
    return found != "libc.a" and Path(found).is_file()


def _overlay_mount_error(state_dir: Path) -> str | None:
    """Mount a throw-away overlay next to where the node will keep its containers."""
    base = state_dir
    while not base.exists():
        base = base.parent
    try:
        with tempfile.TemporaryDirectory(prefix=".overlay-check-", dir=base) as tmp:
            parts = [Path(tmp) / p for p in ("lower", "upper", "work", "merged")]
            for part in parts:
                part.mkdir()
            mount_overlay(*parts)
            unmount(parts[3])
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _networks_in_use() -> tuple[tuple[str, str], ...]:
    found: list[tuple[str, str]] = []
    ip = find_command("ip")
    if ip is None:
        return ()
    for args in (["-4", "-j", "addr"], ["-4", "-j", "route", "show", "table", "all"]):
        out = subprocess.run([ip, *args], capture_output=True, text=True, check=False)
        with contextlib.suppress(ValueError):
            for entry in json.loads(out.stdout or "[]"):
                if "addr_info" in entry:
                    for info in entry["addr_info"]:
                        found.append(
                            (f"{info['local']}/{info['prefixlen']}", str(entry.get("ifname")))
                        )
                elif entry.get("dst") not in (None, "default") and entry.get("type") in (
                    None,
                    "unicast",
                ):
                    found.append((str(entry["dst"]), str(entry.get("dev"))))
    return tuple(found)


def gather_host_facts(state_dir: Path, *, socket_path: Path, pause_cached: bool) -> HostFacts:
    is_root = os.geteuid() == 0
    return HostFacts(
        is_root=is_root,
        commands=frozenset(c for c in COMMAND_PACKAGES if find_command(c) is not None),
        cni_plugins=frozenset(p for p in CNI_PLUGINS if (CNI_BIN_DIR / p).is_file()),
        can_compile_pause=pause_cached or _has_static_libc(),
        has_overlay="overlay" in Path("/proc/filesystems").read_text(),
        overlay_mount_error=_overlay_mount_error(state_dir) if is_root else None,
        cgroup_version=_cgroup_version(),
        capabilities=_capabilities(),
        has_br_netfilter=Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists(),
        has_dev_kmsg=Path("/dev/kmsg").exists(),
        socket_path=str(socket_path),
        networks_in_use=_networks_in_use(),
    )
