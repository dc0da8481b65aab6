"""The registry API's aiohttp application: read-only HTTP over an MCPRegistry's synced data.

Routes:
- `GET /v0/servers`: `{"servers": [...], "metadata": {"count", "nextCursor"?}}`; query
  `search`, `tag` (repeatable), `limit`, `cursor` (see `catalog`). 400 for a bad parameter.
- `GET /v0/servers/{name}`: one server; names may contain `/` (upstream names like
  `io.github.owner/server`), percent-encoded or not. 404 with a JSON body for an unknown name.
- `GET /health`: 200 with the data's hash and server count once data is loaded; 503 before (the
  pod's readiness probe: a registry never synced has nothing to serve).
- `GET /metrics`: Prometheus text (requests, latency, servers, reloads).

Errors are JSON (`{"error": "..."}`). Every answer while no data is loaded is 503. The data
directory is polled for changes (`reloading.DataStore`) by a task set up in `cleanup_ctx`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from moorage_core.supervising import TaskSupervisor
from moorage_registryserver.catalog import Catalog, QueryError, parse_query, search
from moorage_registryserver.reloading import DataStore, Reload
from moorage_registryserver.settings import RegistryServerSettings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class ApiMetrics:
    """The API's collectors, created against an injected registry."""

    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    servers: Gauge
    reloads: Counter
    loaded_at: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ApiMetrics:
        return cls(
            registry=registry,
            requests=Counter(
                "moorage_registry_api_requests_total",
                "HTTP requests by route and status code.",
                ["route", "code"],
                registry=registry,
            ),
            latency=Histogram(
                "moorage_registry_api_request_duration_seconds",
                "Time to answer a request, by route.",
                ["route"],
                buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
                registry=registry,
            ),
            servers=Gauge(
                "moorage_registry_api_servers",
                "Servers in the registry data being served.",
                registry=registry,
            ),
            reloads=Counter(
                "moorage_registry_api_reloads_total",
                "Changes of the data files seen, by result (loaded or rejected).",
                ["result"],
                registry=registry,
            ),
            loaded_at=Gauge(
                "moorage_registry_api_data_loaded_timestamp_seconds",
                "Unix time the data being served was loaded.",
                registry=registry,
            ),
        )

    def observe_reload(self, reload: Reload, catalog: Catalog | None) -> None:
        self.reloads.labels(result="rejected" if reload.error else "loaded").inc()
        if reload.error is None and catalog is not None:
            self.servers.set(len(catalog.servers))
            self.loaded_at.set(time.time())


STORE = web.AppKey("store", DataStore)
METRICS = web.AppKey("metrics", ApiMetrics)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _catalog(request: web.Request) -> Catalog:
    store = request.app[STORE]
    if store.catalog is None:
        raise web.HTTPServiceUnavailable(
            text=store.last_error or "registry data not loaded yet", content_type="text/plain"
        )
    return store.catalog


async def list_servers(request: web.Request) -> web.Response:
    catalog = _catalog(request)
    try:
        query = parse_query(request.query, tags=request.query.getall("tag", []))
    except QueryError as exc:
        return _error(400, str(exc))
    page = search(catalog, query)
    metadata: dict[str, Any] = {"count": len(page.servers)}
    if page.next_cursor is not None:
        metadata["nextCursor"] = page.next_cursor
    return web.json_response({"servers": page.servers, "metadata": metadata})


async def get_server(request: web.Request) -> web.Response:
    catalog = _catalog(request)
    name = request.match_info["name"]
    entry = catalog.get(name)
    if entry is None:
        return _error(404, f"server {name!r} not found")
    return web.json_response(entry)


async def health(request: web.Request) -> web.Response:
    store = request.app[STORE]
    catalog = store.catalog
    if catalog is None:
        return web.json_response(
            {"status": "unavailable", "reason": store.last_error or "registry data not loaded yet"},
            status=503,
        )
    body: dict[str, Any] = {
        "status": "ok",
        "servers": len(catalog.servers),
        "hash": catalog.sync.get("hash"),
        "lastSync": catalog.sync.get("timestamp"),
    }
    if store.last_error:
        # Newer files were rejected: still healthy (serving the last good data), but say so.
        body["warning"] = store.last_error
    return web.json_response(body)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every request; turn HTTP errors into JSON bodies."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = _error(exc.status, exc.text or exc.reason)
    stats = request.app[METRICS]
    stats.requests.labels(route=route, code=str(response.status)).inc()
    stats.latency.labels(route=route).observe(time.perf_counter() - started)
    return response


def make_app(
    settings: RegistryServerSettings,
    *,
    registry: CollectorRegistry | None = None,
    supervisor: TaskSupervisor | None = None,
) -> web.Application:
    """The application serving `settings.data_dir`; it polls for changes while it runs (under
    `supervisor` when given, so that a poll loop that dies ends the process)."""
    stats = ApiMetrics.create(registry or CollectorRegistry())
    store = DataStore(settings.data_dir, on_reload=stats.observe_reload)
    app = web.Application(middlewares=[observe], client_max_size=1024)
    app[STORE] = store
    app[METRICS] = stats
    app.router.add_get("/v0/servers", list_servers)
    app.router.add_get("/v0/servers/{name:.+}", get_server)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)

    async def watch_data(app: web.Application) -> AsyncIterator[None]:
        await store.refresh()
        poll = store.run(interval=settings.poll_interval)
        task = (
            supervisor.spawn("registry data poll", poll)
            if supervisor is not None
            else asyncio.create_task(poll, name="registry data poll")
        )
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(watch_data)
    return app
