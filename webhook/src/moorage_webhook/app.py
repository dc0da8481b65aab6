"""The admission app: `/validate/<kind>` endpoints and probes, separate from running it.

`make_app(settings)` builds the aiohttp application; `server.py` serves it over TLS. The handler
is the thin I/O shell around `admission.review_body`: it checks Content-Type (415) and size (413,
also enforced by aiohttp's `client_max_size`), reads the body, times the review, and, once the
answer is written, counts it and logs one line per review. A bug in validation answers 500 and is logged with its traceback; the
apiserver's failure policy (Fail) then rejects the write.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from moorage_core.serving import HealthChecks, make_health_app
from moorage_webhook.admission import (
    AllowancesLookup,
    KindEndpoint,
    ReviewOutcome,
    bad_request,
    build_endpoints,
    no_tenants,
    review_body,
)
from moorage_webhook.metrics import WebhookMetrics
from moorage_webhook.settings import WebhookSettings

log = structlog.get_logger(__name__)

SETTINGS_KEY = web.AppKey("settings", WebhookSettings)
METRICS_KEY = web.AppKey("metrics", WebhookMetrics)
JSON = "application/json"


def _log_outcome(endpoint: KindEndpoint, outcome: ReviewOutcome, seconds: float) -> None:
    fields: dict[str, object] = {
        "kind": endpoint.kind,
        "uid": outcome.uid,
        "operation": outcome.operation,
        "namespace": outcome.namespace,
        "name": outcome.name,
        "user": outcome.user,
        "allowed": outcome.allowed,
        "code": outcome.code,
        "dry_run": outcome.dry_run,
        "warnings": outcome.warnings,
        "duration_ms": round(seconds * 1000, 3),
    }
    if outcome.message:
        fields["message"] = outcome.message
    log.info("review_finished", **fields)


async def _outcome(
    endpoint: KindEndpoint,
    request: web.Request,
    *,
    max_bytes: int,
    allowances: AllowancesLookup,
) -> ReviewOutcome:
    if request.content_type != JSON:
        return bad_request(f"Content-Type must be {JSON}, not {request.content_type}", status=415)
    if request.content_length is not None and request.content_length > max_bytes:
        return bad_request(f"request body is larger than {max_bytes} bytes", status=413)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return bad_request(f"request body is larger than {max_bytes} bytes", status=413)
    try:
        return review_body(endpoint, body, allowances=allowances)
    except Exception as exc:
        # The one place a validation bug is caught: answer 500 so the failure policy decides.
        log.exception("review_crashed", kind=endpoint.kind, error=str(exc))
        return bad_request("internal error while validating; see the webhook's log", status=500)


def _review_handler(
    endpoint: KindEndpoint,
    *,
    metrics: WebhookMetrics,
    max_bytes: int,
    allowances: AllowancesLookup,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    def record(outcome: ReviewOutcome, seconds: float) -> None:
        metrics.observe(
            kind=endpoint.kind,
            operation=outcome.operation,
            allowed=outcome.allowed,
            code=outcome.code,
            seconds=seconds,
        )
        _log_outcome(endpoint, outcome, seconds)

    async def handle(request: web.Request) -> web.Response:
        started = time.perf_counter()
        outcome = await _outcome(endpoint, request, max_bytes=max_bytes, allowances=allowances)
        seconds = time.perf_counter() - started
        # Counted and logged once the answer is on its way: aiohttp writes the response in this
        # same step of the loop, and the callback runs in the next one, off the apiserver's wait.
        asyncio.get_running_loop().call_soon(record, outcome, seconds)
        return web.Response(
            status=outcome.status, body=outcome.body, content_type=outcome.content_type
        )

    return handle


def _add_probes(app: web.Application, checks: HealthChecks) -> None:
    # The same /healthz and /readyz handlers the metrics port serves, so both ports agree.
    probes = make_health_app(CollectorRegistry(auto_describe=False), checks)
    for route in probes.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path in {"/healthz", "/readyz"} and route.method == "GET":
            app.router.add_get(path, route.handler)


def make_app(
    settings: WebhookSettings,
    *,
    metrics: WebhookMetrics | None = None,
    checks: HealthChecks | None = None,
    endpoints: Sequence[KindEndpoint] | None = None,
    allowances: AllowancesLookup = no_tenants,
) -> web.Application:
    """The admission application; `metrics` defaults to collectors on a private registry,
    `endpoints` to every kind's, judged as `settings` say, and `allowances` (MCPTenants by
    namespace) to none: nothing beyond the pod security rules."""
    if endpoints is None:
        endpoints = build_endpoints(allow_local_sources=settings.registry_allow_local_sources)
    metrics = metrics or WebhookMetrics.create(CollectorRegistry(auto_describe=False))
    app = web.Application(client_max_size=settings.max_request_bytes)
    app[SETTINGS_KEY] = settings
    app[METRICS_KEY] = metrics
    for endpoint in endpoints:
        app.router.add_post(
            endpoint.path,
            _review_handler(
                endpoint,
                metrics=metrics,
                max_bytes=settings.max_request_bytes,
                allowances=allowances,
            ),
        )
    _add_probes(app, checks or HealthChecks())
    return app
