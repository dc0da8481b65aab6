"""The proxy runner's Prometheus metrics, created against an injected registry.

Names mirror the rest of Moorage (`moorage_<component>_...`): requests by MCP method and
outcome, request latency, open client sessions, backend restarts, messages dropped because
a client did not read its stream, and how sessions are shared between replicas (session store
failures, sessions adopted from a replica that is gone, requests forwarded to a session's
owner).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


KNOWN_METHODS = frozenset(
    {
        "initialize",
        "ping",
        "server/discover",
        "subscriptions/listen",
        "tools/list",
        "tools/call",
        "prompts/list",
        "prompts/get",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
        "completion/complete",
        "logging/setLevel",
        "unknown",
        "response",
    }
)
"""Label values kept as they are: the MCP methods, `unknown` (a body that could not be read)
and `response` (a client's answer to a server request)."""


def method_label(method: str) -> str:
    """Methods outside the MCP set share one label, so clients cannot grow the series."""
    return method if method in KNOWN_METHODS else "other"


class ProxyMetrics:
    """The collectors; `status` is `ok`, `error` (a JSON-RPC error) or the HTTP status of a
    request turned away before it reached the backend (`400`, `404`, `413`, ...)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "moorage_proxy_requests_total",
            "MCP requests handled, by method and status.",
            ["method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "moorage_proxy_request_duration_seconds",
            "Time from a request's arrival to its response, by method.",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.sessions = Gauge(
            "moorage_proxy_active_sessions",
            "Client sessions currently open (streamable HTTP and SSE).",
            registry=registry,
        )
        self.backend_restarts = Counter(
            "moorage_proxy_backend_restarts_total",
            "Times the backend connection was re-established after it ended.",
            registry=registry,
        )
        self.backend_up = Gauge(
            "moorage_proxy_backend_connected",
            "1 while the backend is connected and initialised, else 0.",
            registry=registry,
        )
        self.backend_inflight = Gauge(
            "moorage_proxy_backend_inflight_requests",
            "Client requests sent to the backend and not answered yet.",
            registry=registry,
        )
        self.dropped = Counter(
            "moorage_proxy_dropped_messages_total",
            "Server messages dropped because the client's stream was full or gone.",
            registry=registry,
        )
        self.session_store_errors = Counter(
            "moorage_proxy_session_store_errors_total",
            "Session store operations that failed (Redis unreachable or answering what the "
            "proxy did not write), by operation.",
            ["operation"],
            registry=registry,
        )
        self.sessions_adopted = Counter(
            "moorage_proxy_sessions_adopted_total",
            "Sessions this replica took over from a replica that was gone or had released "
            "them, by session kind (streamable-http, sse, aggregate).",
            ["kind"],
            registry=registry,
        )
        # Counted by the start-up's `Forwarder` (`count_forward`), for every forwarded request.
        self.requests_forwarded = Counter(
            "moorage_proxy_requests_forwarded_total",
            "Client requests passed to the replica owning their session, by outcome (ok, "
            "owner_unreachable, owner_lost).",
            ["outcome"],
            registry=registry,
        )

        # Resolving label values costs more than the update itself: keep the children.
        self._counters: dict[tuple[str, str], Any] = {}
        self._histograms: dict[str, Any] = {}

    def count_forward(self, outcome: str) -> None:
        """One forwarded request: `ok` (the owner answered), `owner_unreachable` (no
        connection: the caller adopts the session), `owner_lost` (lost before answering)."""
        self.requests_forwarded.labels(outcome).inc()

    def observe(self, method: str, status: str, seconds: float) -> None:
        label = method_label(method)
        counter = self._counters.get((label, status))
        if counter is None:
            counter = self._counters[(label, status)] = self.requests.labels(label, status)
        histogram = self._histograms.get(label)
        if histogram is None:
            histogram = self._histograms[label] = self.latency.labels(label)
        counter.inc()
        histogram.observe(seconds)
