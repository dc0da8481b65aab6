"""Admission rules for `spec.sessionStorage`, `spec.rateLimits` and the replicas that share them,
beyond the schema.

The schema (and the models behind it) refuses what cannot work: bounds, a tool limited twice,
Redis settings without `redis`, a key prefix with other characters, and (CRD rule) more than one
replica with memory storage. That last rule is checked here too, naming `spec.replicas`: a
session's requests may land on any replica, so replicas share sessions through Redis. Unset
`replicas` (an MCPServer's default: one replica unless an autoscaler adds more) is not warned
about: every MCPServer would be. What is legal but likely a mistake gets a warning, naming the
field: a Redis certificate not verified, a failure mode that cannot apply. Shared by every kind
that runs a proxy. Pure: no I/O.
"""

from __future__ import annotations

from moorage_api.ratelimits import RateLimits
from moorage_api.sessionstorage import REPLICAS_NEED_REDIS, SessionStorage, is_memory_with_replicas
from moorage_webhook.validation.verdict import Findings


def check_rate_limits(
    storage: SessionStorage, limits: RateLimits | None, *, replicas: int | None, out: Findings
) -> None:
    """Errors and warnings about `storage` and `limits` of a proxy that runs `replicas`
    replicas (None: not managed, e.g. by an autoscaler)."""
    redis = storage.redis
    if is_memory_with_replicas(storage, replicas=replicas):
        out.error("spec.replicas", REPLICAS_NEED_REDIS)
    if limits is not None and redis is None and limits.when_unavailable == "deny":
        out.warn(
            "spec.rateLimits.whenUnavailable",
            "only applies to sessionStorage.type redis: memory is always available",
        )
    if redis is not None and redis.tls is not None and redis.tls.insecure_skip_verify:
        out.warn(
            "spec.sessionStorage.redis.tls.insecureSkipVerify",
            "the Redis server's certificate is not verified: anyone on the path can read and "
            "change the sessions and counts; set caConfigMapRef instead",
        )
