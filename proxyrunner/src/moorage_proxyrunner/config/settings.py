"""The proxy's own settings: how it serves clients, independent of where they come from.

Local mode fills them from flags; the cluster start-up fills them from the RunConfig. Frozen:
a change that can be applied live (the tool policy) is swapped on the step that holds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from moorage_api.mcpserver import StdioEra
from moorage_api.runconfig import (
    RunConfigAuthz,
    RunConfigOIDC,
    RunConfigRateLimits,
    RunConfigSessionStorage,
)
from moorage_proxyrunner.config.limits import DEFAULT_DRAIN_TIMEOUT, Limits
from moorage_proxyrunner.config.toolpolicy import ToolPolicy

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


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

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS
