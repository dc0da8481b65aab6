"""The webhook's Prometheus collectors, created against an injected registry.

Names follow controller-runtime's webhook metrics with our prefix. Buckets reach down to 250 µs:
a review is expected to take about a millisecond, and default buckets (from 5 ms) would hide it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram

_DURATION_BUCKETS: Final = (
    0.00025,
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
)


@dataclass(frozen=True, slots=True)
class WebhookMetrics:
    requests: Counter
    """moorage_webhook_requests_total{kind,operation,allowed,code}: every request to a
    /validate endpoint; `allowed` is true/false, or `error` when no review was answered; `code` the
    admission status code (200 allowed, 422 denied) or the HTTP error status."""
    duration: Histogram
    """moorage_webhook_request_duration_seconds{kind}: time from the request's arrival to the
    response, body reading included."""

    @classmethod
    def create(cls, registry: CollectorRegistry) -> WebhookMetrics:
        return cls(
            requests=Counter(
                "moorage_webhook_requests_total",
                "Admission requests by kind, operation, outcome and code.",
                ["kind", "operation", "allowed", "code"],
                registry=registry,
            ),
            duration=Histogram(
                "moorage_webhook_request_duration_seconds",
                "Time to answer an admission request.",
                ["kind"],
                buckets=_DURATION_BUCKETS,
                registry=registry,
            ),
        )

    def observe(
        self, *, kind: str, operation: str, allowed: bool | None, code: int, seconds: float
    ) -> None:
        outcome = "error" if allowed is None else ("true" if allowed else "false")
        self.requests.labels(kind, operation or "unknown", outcome, str(code)).inc()
        self.duration.labels(kind).observe(seconds)
