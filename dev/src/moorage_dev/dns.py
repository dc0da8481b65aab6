"""Cluster DNS for the local control plane's real node: CoreDNS, its Corefile and a readiness probe.

CoreDNS is built from Go modules once (CGO off) with only the plugins the Corefile below uses, and
cached beside the control plane binaries; `MOORAGE_COREDNS_BIN` names an existing binary instead.
The Corefile serves the cluster domain and the reverse zones of the service and pod ranges from the
apiserver (the `kubernetes` plugin) and answers every other name NXDOMAIN at once: the node has no
upstream resolver, and a definite answer stops clients from waiting out their timeouts.

Whoever runs the node starts `[ensure_coredns(report), "-conf", str(write_corefile(...))]` and waits
for `dns_ready(bind_ip, port)`. `corefile()` and the query codec are pure; the rest does I/O.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import socket
import struct
from collections.abc import Sequence
from pathlib import Path

from moorage_dev.binaries import (
    BinaryError,
    Reporter,
    build_once,
    cache_root,
    find_prebuilt,
    go_build,
    go_module,
)

COREDNS_VERSION = "1.15.0"
CLUSTER_DOMAIN = "cluster.local"
# Seconds a record may be cached: short, so a recreated Service is seen almost at once.
RECORD_TTL = 5

# The plugins compiled in, in the order CoreDNS chains them (core/dnsserver/zdirectives.go): the
# chain order is this list's order, whatever order the Corefile names them in.
COREDNS_PLUGINS = ("bind", "ready", "health", "errors", "loadbalance", "template", "kubernetes")


def coredns_go_mod(version: str) -> str:
    """The wrapper module: CoreDNS's own `main` links every plugin (cloud SDKs included)."""
    return (
        f"module moorage.dev/coredns\n\ngo 1.26\n\nrequire github.com/coredns/coredns v{version}\n"
    )


def coredns_main_go() -> str:
    imports = "\n".join(f'\t_ "github.com/coredns/coredns/plugin/{p}"' for p in COREDNS_PLUGINS)
    directives = "\n".join(f'\t\t"{p}",' for p in COREDNS_PLUGINS)
    return (
        "package main\n\nimport (\n"
        '\t"github.com/coredns/coredns/core/dnsserver"\n'
        '\t"github.com/coredns/coredns/coremain"\n\n'
        f"{imports}\n)\n\n"
        "func init() {\n\tdnsserver.Directives = []string{\n"
        f"{directives}\n\t}}\n}}\n\n"
        "func main() {\n\tcoremain.Run()\n}\n"
    )


def coredns_cache_dir() -> Path:
    """Keyed by version and by the generated `main`, so a change of plugins rebuilds."""
    digest = hashlib.sha256(coredns_main_go().encode()).hexdigest()[:8]
    return cache_root() / "controlplane" / f"coredns-{COREDNS_VERSION}-{digest}"


def build_coredns(go: str, out: Path, *, version: str, report: Reporter) -> None:
    files = {"go.mod": coredns_go_mod(version), "main.go": coredns_main_go()}
    what = f"coredns v{version}"
    with go_module(go, name="coredns", files=files, what=what, report=report) as work:
        go_build(
            go,
            work,
            ldflags="-s -w -X github.com/coredns/coredns/coremain.GitCommit=v" + version,
            out=str(out / "coredns"),
            targets=["."],
            what=f"build coredns v{version}",
            report=report,
        )


def ensure_coredns(report: Reporter) -> Path:
    """The CoreDNS binary: `MOORAGE_COREDNS_BIN`, else the cached build, built once if missing."""
    prebuilt = find_prebuilt("coredns")
    if prebuilt is not None:
        return prebuilt
    directory = coredns_cache_dir()
    binary = directory / "bin" / "coredns"

    def build(go: str, out: Path) -> None:
        try:
            build_coredns(go, out, version=COREDNS_VERSION, report=report)
        except BinaryError as exc:
            raise BinaryError(f"CoreDNS v{COREDNS_VERSION} needs Go >= 1.26. {exc}") from exc

    build_once(
        directory,
        what=f"coredns v{COREDNS_VERSION}",
        complete=binary.is_file,
        build=build,
        into=binary.parent,
        names=("coredns",),
        report=report,
    )
    return binary


def corefile(
    *,
    bind_ip: str,
    port: int,
    kubeconfig: Path,
    reverse_cidrs: Sequence[str],
    domain: str = CLUSTER_DOMAIN,
    health_port: int | None = None,
    ready_port: int | None = None,
) -> str:
    """The Corefile serving `domain` and the reverse zones of `reverse_cidrs` on `bind_ip:port`.

    Unknown names inside those zones get the kubernetes plugin's own NXDOMAIN: there is no
    `fallthrough`, because the only thing after it would be an empty chain, which answers
    SERVFAIL. Every other name gets NXDOMAIN from the catch-all block. `health_port` and
    `ready_port` add CoreDNS's /health and /ready on 127.0.0.1 (ready once the apiserver's
    objects are synced).
    """
    for cidr in reverse_cidrs:
        # CoreDNS turns a CIDR zone into reverse zones; a host address would be a typo.
        ipaddress.ip_network(cidr, strict=True)
    zones = " ".join(f"{zone}:{port}" for zone in (domain, *reverse_cidrs))
    probes = ""
    if health_port is not None:
        probes += f"    health 127.0.0.1:{health_port}\n"
    if ready_port is not None:
        probes += f"    ready 127.0.0.1:{ready_port}\n"
    return (
        f"{zones} {{\n"
        f"    bind {bind_ip}\n"
        f"{probes}"
        "    errors\n"
        "    loadbalance\n"
        "    kubernetes {\n"
        f"        kubeconfig {kubeconfig}\n"
        "        pods insecure\n"
        f"        ttl {RECORD_TTL}\n"
        "    }\n"
        "}\n"
        f".:{port} {{\n"
        f"    bind {bind_ip}\n"
        "    errors\n"
        "    template ANY ANY {\n"
        "        rcode NXDOMAIN\n"
        "    }\n"
        "}\n"
    )


def write_corefile(
    state_dir: Path,
    *,
    bind_ip: str,
    port: int,
    kubeconfig: Path,
    reverse_cidrs: Sequence[str],
    domain: str = CLUSTER_DOMAIN,
    health_port: int | None = None,
    ready_port: int | None = None,
) -> Path:
    """`<state_dir>/Corefile` for `corefile(...)`; start CoreDNS with `-conf <that path>`."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "Corefile"
    path.write_text(
        corefile(
            bind_ip=bind_ip,
            port=port,
            kubeconfig=kubeconfig,
            reverse_cidrs=reverse_cidrs,
            domain=domain,
            health_port=health_port,
            ready_port=ready_port,
        )
    )
    return path


# The DNS wire format, just enough for one question and the header of its answer (RFC 1035 §4.1).
TYPE_A = 1
RCODE_NOERROR = 0
RCODE_NXDOMAIN = 3
_HEADER = struct.Struct("!HHHHHH")
_RECURSION_DESIRED = 0x0100
_CLASS_IN = 1


def encode_query(name: str, *, query_id: int, qtype: int = TYPE_A) -> bytes:
    labels = [label.encode("ascii") for label in name.rstrip(".").split(".")]
    if any(not 0 < len(label) < 64 for label in labels):
        raise ValueError(f"not a DNS name: {name!r}")
    qname = b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"
    header = _HEADER.pack(query_id, _RECURSION_DESIRED, 1, 0, 0, 0)
    return header + qname + struct.pack("!HH", qtype, _CLASS_IN)


def decode_reply_header(reply: bytes, *, query_id: int) -> tuple[int, int] | None:
    """`(rcode, answer count)` of a reply to `query_id`; None for anything else."""
    if len(reply) < _HEADER.size:
        return None
    reply_id, flags, _qd, answers, _ns, _ar = _HEADER.unpack_from(reply)
    is_response = bool(flags & 0x8000)
    if reply_id != query_id or not is_response:
        return None
    return flags & 0x000F, answers


def query_rcode(ip: str, port: int, name: str, *, timeout: float = 1.0) -> tuple[int, int] | None:
    """`(rcode, answer count)` for an A query of `name` over UDP, None when nothing answered."""
    query_id = secrets.randbelow(0x10000)
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(encode_query(name, query_id=query_id), (ip, port))
            while True:
                reply, _ = sock.recvfrom(4096)
                decoded = decode_reply_header(reply, query_id=query_id)
                if decoded is not None:
                    return decoded
        except OSError:  # a timeout, or ICMP port unreachable while CoreDNS is still starting
            return None


def dns_ready(ip: str, port: int, *, domain: str = CLUSTER_DOMAIN, timeout: float = 1.0) -> bool:
    """True once CoreDNS answers the apiserver's own Service from the apiserver's data.

    Until the kubernetes plugin has synced it answers SERVFAIL, so an address in the answer
    proves both that CoreDNS listens and that it reads the cluster.
    """
    answer = query_rcode(ip, port, f"kubernetes.default.svc.{domain}", timeout=timeout)
    return answer is not None and answer[0] == RCODE_NOERROR and answer[1] > 0
