"""Where an MCPRegistry's git source may point: not at the operator's own files or host.

The operator fetches git sources itself, so a repository URL is a request the operator makes on a
namespace user's behalf. By default it refuses `file://` (the operator's filesystem) and hosts
that are the operator's own machine or the cluster's control plane: loopback, link-local (cloud
metadata at 169.254.169.254 lives there), unspecified and multicast addresses, and the
apiserver's Service address. Private ranges stay allowed: in-house git servers live there.
A platform admin lifts the restriction with `REGISTRY_ALLOW_LOCAL_SOURCES=true` on the operator
and the webhook (tests and local development use it), never a field a namespace user sets.

Pure: no I/O and no DNS. The webhook checks what the URL says (`local_source_problem`); the
operator also resolves the host and checks every address (`refused_address_reason`) before git
connects, and pins git to the addresses it checked.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOW_LOCAL_SOURCES_SETTING: Final = "REGISTRY_ALLOW_LOCAL_SOURCES"
METADATA_ADDRESSES: Final = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),
        ipaddress.ip_address("fd00:ec2::254"),
        ipaddress.ip_address("100.100.100.200"),
    }
)
"""Cloud metadata services: the common IPv4 one is link-local anyway; AWS's IPv6 one and Alibaba
Cloud's (in the shared address space) are not."""
_SCP_LIKE: Final = re.compile(r"(?:[^@/]+@)?(?P<host>\[[^\]]*\]|[^:/]+):(?!//)")
_HINT: Final = (
    f"a platform admin can allow local sources with {ALLOW_LOCAL_SOURCES_SETTING}=true on the "
    "operator and the webhook"
)


@dataclass(frozen=True, slots=True)
class SourcePolicy:
    """Which git sources the operator may fetch."""

    allow_local: bool = False
    """REGISTRY_ALLOW_LOCAL_SOURCES: fetch `file://` and local hosts too. Default false."""
    apiserver_addresses: frozenset[IPAddress] = field(default_factory=frozenset)
    """The cluster's apiserver Service address(es) (`KUBERNETES_SERVICE_HOST`), refused too."""


@dataclass(frozen=True, slots=True)
class SourceHost:
    """The host a git URL connects to: `host` as written (brackets removed), `port` or None."""

    scheme: str
    """`https` or `ssh` (scp-like `git@host:path` is ssh)."""
    host: str
    port: int | None


def source_host(url: str) -> SourceHost | None:
    """The host of an `https://`, `ssh://` or `[user@]host:path` URL; None for anything else
    (`file://`, or a URL that does not parse)."""
    if "://" not in url:
        match = _SCP_LIKE.match(url)
        if match is None:
            return None
        return SourceHost("ssh", match.group("host").strip("[]").lower(), None)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "ssh") or not parts.hostname:
        return None
    return SourceHost(scheme, parts.hostname.lower(), port)


def literal_address(host: str) -> IPAddress | None:
    """`host` as an IP address, or None for a name."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def refused_address_reason(
    address: IPAddress, *, apiserver: Collection[IPAddress] = ()
) -> str | None:
    """Why the operator must not connect to `address` (None: it may)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in apiserver:
        return "the cluster's apiserver"
    if address.is_loopback:
        return "a loopback address (the operator's own pod)"
    if address in METADATA_ADDRESSES:
        return "a cloud metadata service"
    if address.is_link_local:
        return "a link-local address (where cloud metadata services live)"
    if address.is_unspecified:
        return "the unspecified address (the operator's own pod)"
    if address.is_multicast:
        return "a multicast address"
    return None


def is_localhost_name(host: str) -> bool:
    """`localhost` and its subdomains always mean loopback (RFC 6761)."""
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


def local_source_problem(url: str, *, apiserver: Collection[IPAddress] = ()) -> str | None:
    """Why a repository URL reaches the operator's own files or host, from its text alone (no
    DNS); None when the text is fine. A message names the host and what to do (never the URL,
    which may carry a password)."""
    if url[:5].lower() == "file:":
        return (
            f"file:// reads the operator's own filesystem: use an https:// or ssh:// repository "
            f"({_HINT})"
        )
    where = source_host(url)
    if where is None:
        return None
    if is_localhost_name(where.host):
        reason: str | None = "a loopback address (the operator's own pod)"
    else:
        address = literal_address(where.host)
        reason = None if address is None else refused_address_reason(address, apiserver=apiserver)
    if reason is None:
        return None
    return f"host {where.host} is {reason}: use the git server's own name or address ({_HINT})"
