"""Admission rules for `spec.sessionStorage` and `spec.rateLimits` beyond the schema.

The schema (and the models behind it) refuses what cannot work: bounds, a tool limited twice,
Redis settings without `redis`, a key prefix with other characters. What is legal but likely a
mistake gets a warning here, naming the field: limits counted per replica while several
replicas run, Redis configured with nothing to keep in it, a Redis certificate not verified, a
failure mode that cannot apply. Shared by every kind that runs a proxy. Pure: no I/O.
"""

from __future__ import annotations

from moorage_api.ratelimits import RateLimits
from moorage_api.sessionstorage import SessionStorage
from moorage_webhook.validation.verdict import Findings


def check_rate_limits(
    storage: SessionStorage, limits: RateLimits | None, *, replicas: int | None, out: Findings
) -> None:
    """Warnings about `storage` and `limits` of a proxy that runs `replicas` replicas (None:
    not managed, e.g. by an autoscaler)."""
    redis = storage.redis
    if limits is not None and redis is None:
        if replicas is not None and replicas > 1:
            out.warn(
                "spec.rateLimits",
                f"counted in each proxy replica's memory: with {replicas} replicas a client may "
                "get up to that many times each limit; set sessionStorage.type to redis to "
                "share them",
            )
        if limits.when_unavailable == "deny":
            out.warn(
                "spec.rateLimits.whenUnavailable",
                "only applies to sessionStorage.type redis: memory is always available",
            )
    if redis is not None and limits is None:
        out.warn(
            "spec.sessionStorage",
            "redis keeps only rate limits (sessions stay in each proxy's memory); without "
            "rateLimits nothing is stored there",
        )
    if redis is not None and redis.tls is not None and redis.tls.insecure_skip_verify:
        out.warn(
            "spec.sessionStorage.redis.tls.insecureSkipVerify",
            "the Redis server's certificate is not verified: anyone on the path can read and "
            "change the counts; set caConfigMapRef instead",
        )
