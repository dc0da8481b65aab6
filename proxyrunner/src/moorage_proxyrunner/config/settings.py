"""The proxy's own settings: how it serves clients, independent of where they come from.

Local mode fills them from flags; the cluster start-up fills them from the RunConfig. Frozen:
a change that can be applied live (the tool policy) is swapped on the step that holds it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from moorage_api.mcpserver import StdioEra
from moorage_api.runconfig import (
    RunConfigAuthz,
    RunConfigOIDC,
    RunConfigRateLimits,
    RunConfigSessionStorage,
)
from moorage_core.settings import SettingError
from moorage_proxyrunner.config.limits import DEFAULT_DRAIN_TIMEOUT, Limits
from moorage_proxyrunner.config.toolpolicy import ToolPolicy

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
ADVERTISE_ADDRESS_ENV = "MOORAGE_ADVERTISE_ADDRESS"
ADVERTISE_ADDRESS_SETTING = f"{ADVERTISE_ADDRESS_ENV} / --advertise-address"
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


@dataclass(frozen=True, slots=True)
class ProxyRunnerSettings:
    host: str = "127.0.0.1"
    """Address to listen on. Default loopback: a laptop proxy is not for the network."""
    port: int = 8080
    """Port for MCP clients, `/health` and `/metrics`."""
    listen_setting: str = "--host / --port"
    """What chose `host` and `port`, named when they cannot be used."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Largest request body accepted, in bytes (default 8 MiB); larger → 413."""
    keepalive_interval: float = 15.0
    """Seconds between SSE keep-alive comments on an idle stream (default 15)."""
    queue_capacity: int = 1024
    """Messages buffered per client stream before a slow reader loses them (default 1024)."""
    session_idle_timeout: float = 3600.0
    """Seconds without traffic after which a legacy session is closed (default 1 h)."""
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    """Seconds SIGTERM lets requests in flight finish (new sessions refused meanwhile) before
    streams are ended and the sessions handed over (default 10)."""
    allowed_hosts: tuple[str, ...] = ()
    """Host header values accepted (host names, `name:port`, or `name:*`). Empty: loopback
    names only when listening on loopback, anything otherwise."""
    allowed_origins: tuple[str, ...] = ()
    """Origin values accepted besides the proxy's own origin (`scheme://host[:port|:*]`)."""
    endpoint_prefix: str = ""
    """Path prefix for legacy SSE endpoint URLs when served behind an ingress."""
    trust_proxy_headers: bool = False
    """Honour `X-Forwarded-Prefix`/`X-Forwarded-Proto`/`X-Forwarded-Host` for endpoint URLs."""
    tool_policy: ToolPolicy = field(default_factory=ToolPolicy)
    """Initial tool filter/override."""
    oidc: RunConfigOIDC | None = None
    """Whose bearer tokens are accepted (`moorage_proxyrunner.policy.authn`); None: no authentication."""
    authz: RunConfigAuthz | None = None
    """Initial Cedar policies and entities (`moorage_proxyrunner.policy.authz`); None: no authorisation."""
    audit: bool = False
    """Initially write one audit record per MCP request (`moorage_proxyrunner.policy.audit`)."""
    stdio_era: StdioEra = "handshake"
    """The era a stdio server runs in: "handshake" (initialised, as every server accepts), or
    "auto" (probed with `server/discover`; a dual-era server then runs 2026-07-28 and
    handshake-era clients are translated). Not the default: a dual-era server whose tools ask
    the client through server-to-client requests (not `input_required`) cannot ask anything
    in the modern era."""
    rate_limits: RunConfigRateLimits | None = None
    """Initial rate limits (`moorage_proxyrunner.policy.ratelimit`); None: none."""
    session_storage: RunConfigSessionStorage = field(default_factory=RunConfigSessionStorage)
    """Where the rate-limit buckets live: this process, or Redis (shared by the replicas)."""

    exchange_cache_size: int = 1024
    """Exchanged upstream tokens kept (outgoing token exchange), least recently used dropped."""
    remote_check_interval: float = 60.0
    """Seconds between the `initialize` checks of a remote MCP server (default 60)."""
    limits: Limits = field(default_factory=Limits)
    """Time, session, queue and in-flight bounds (`moorage_proxyrunner.config.limits`)."""
    advertise_address: str = ""
    """`host:port` at which the other replicas reach this one's MCP port (sessions are
    forwarded to their owner there, and it names the owner in the session store). Empty: the
    loopback address at `port` (the start-ups fill it with `advertise_address_from`)."""

    def __post_init__(self) -> None:
        if not self.advertise_address:
            object.__setattr__(self, "advertise_address", f"127.0.0.1:{self.port}")

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS


def parse_advertise_address(text: str) -> str:
    """`text` when it is `host:port` (a host name, an IPv4 address or an IPv6 address in
    brackets; a port from 1 to 65535); SettingError otherwise."""
    host, sep, port = text.strip().rpartition(":")
    problem = None
    if not sep or not host:
        problem = "expected host:port"
    elif not port.isdigit() or not 1 <= int(port) <= 65535:
        problem = f"port {port!r} is not a number from 1 to 65535"
    elif host.startswith("["):
        if not host.endswith("]") or not _is_ipv6(host[1:-1]):
            problem = f"{host!r} is not an IPv6 address in brackets"
    elif ":" in host:
        problem = "an IPv6 address goes in brackets, e.g. [fd00::1]:8080"
    elif _HOST_NAME.fullmatch(host) is None or len(host) > 253:
        problem = f"{host!r} is not a host name or IPv4 address"
    if problem is not None:
        raise SettingError(f"{ADVERTISE_ADDRESS_SETTING}: {text!r}: {problem}")
    return f"{host}:{int(port)}"


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def advertise_address_from(flag: str | None, *, port: int, environ: Mapping[str, str]) -> str:
    """The replica's advertised address: the flag, else `MOORAGE_ADVERTISE_ADDRESS`, else
    `$POD_IP:<port>` (the operator sets `POD_IP` from the pod's status), else loopback.
    SettingError naming the setting when the address is not `host:port`."""
    chosen = flag or environ.get(ADVERTISE_ADDRESS_ENV)
    if chosen:
        return parse_advertise_address(chosen)
    pod_ip = environ.get("POD_IP")
    if pod_ip:
        return f"[{pod_ip}]:{port}" if ":" in pod_ip else f"{pod_ip}:{port}"
    return f"127.0.0.1:{port}"
