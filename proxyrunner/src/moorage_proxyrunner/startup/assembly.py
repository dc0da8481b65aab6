"""The proxy assembled and served: one assembly shared by the cluster and the local start-ups.

Both start-ups decide what to front (a `Backend`: a stdio server behind a channel factory, or
HTTP servers at their URLs) and build the `Middleware` from their settings; from there the proxy
is the same: `build_endpoints` puts the stdio bridge or the HTTP reverse proxy behind the MCP
paths, and `serve_proxy` makes the app, installs the middleware, fetches what it needs up front,
follows the RunConfig when the start-up names a source for it (`Reloading`), serves until the
stop event, and re-raises what ended a background task. The start-ups own what they opened
(clients, channel factories, the task supervisor) and close it through an `AsyncExitStack`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from moorage_api.runconfig import RunConfig
from moorage_core.supervising import TaskSupervisor
from moorage_proxyrunner.backends.remote.client import (
    OutgoingAuthStep,
    OutgoingClient,
    outgoing_caller,
    outgoing_client,
)
from moorage_proxyrunner.backends.reverse.endpoints import HttpEndpoints
from moorage_proxyrunner.backends.stdio.bridge import StdioBridge
from moorage_proxyrunner.backends.stdio.channels import ChannelFactory
from moorage_proxyrunner.backends.stdio.endpoints import BridgeEndpoints
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.front.app import Endpoints, Handover, make_app, serve
from moorage_proxyrunner.front.metrics import ProxyMetrics
from moorage_proxyrunner.policy.chain import Middleware
from moorage_proxyrunner.policy.ratelimit import BucketStore
from moorage_proxyrunner.policy.redisbuckets import RedisBuckets
from moorage_proxyrunner.policy.reload import RunConfigReloader
from moorage_proxyrunner.protocol.pipeline import Pipeline
from moorage_proxyrunner.sessionstore.forwarding import Forwarder
from moorage_proxyrunner.sessionstore.opening import keep_alive, open_session_store
from moorage_proxyrunner.sessionstore.redisstore import RedisStore
from moorage_proxyrunner.sessionstore.store import SessionStore, SessionStoreUnavailable

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Backend:
    """What the proxy fronts: a stdio server whose lines `channels` carries, or the HTTP
    servers at `target_urls` speaking `transport` (a remote one's among them), reached through
    `client` when requests to them carry outgoing headers or authentication."""

    transport: str
    channels: ChannelFactory | None = None
    target_urls: tuple[str, ...] = ()
    client: OutgoingClient | None = None
    bind: Callable[[StdioBridge], None] | None = None
    """Given the stdio bridge once built (the aggregator follows its clients' sessions)."""


@dataclass(frozen=True, slots=True)
class SessionSharing:
    """What the endpoints share sessions with the other replicas through: the process's
    store, this replica's advertised address, and the forwarder to a session's owner."""

    store: SessionStore
    address: str
    forwarder: Forwarder

    async def hand_over(self) -> None:
        """The drain's last step: clear this replica's ownership of its sessions so that the
        others adopt them at their next request; nothing is deleted. A store that cannot be
        reached is logged: the owner's heartbeat then runs out, and the others adopt the
        sessions all the same."""
        try:
            released = await self.store.release(self.address)
        except SessionStoreUnavailable as exc:
            log.warning("sessions_not_released", address=self.address, error=str(exc))
            return
        log.info("sessions_released", address=self.address, sessions=released)


def share_sessions(
    settings: ProxyRunnerSettings,
    *,
    supervisor: TaskSupervisor,
    stack: contextlib.AsyncExitStack,
    metrics: ProxyMetrics | None = None,
    redis_ca: str | None = None,
) -> SessionSharing:
    """Open the session store `settings` name and start this replica's heartbeat under
    `supervisor`; the store and the forwarder (whose requests `metrics` counts) are closed by
    `stack`."""
    store = open_session_store(settings, redis_ca=redis_ca)
    stack.push_async_callback(store.close)
    forwarder = Forwarder(on_outcome=metrics.count_forward if metrics is not None else None)
    stack.push_async_callback(forwarder.close)
    address = settings.advertise_address
    failed = None
    if metrics is not None:
        failed = metrics.session_store_errors.labels(operation="heartbeat").inc
    supervisor.spawn("heartbeat", keep_alive(store, address, on_failure=failed))
    return SessionSharing(store=store, address=address, forwarder=forwarder)


def shared_buckets(sharing: SessionSharing) -> BucketStore | None:
    """The rate-limit buckets on the session store's Redis client (one connection pool per
    process; the store closes it); None when the sessions are not in Redis."""
    store = sharing.store
    if not isinstance(store, RedisStore):
        return None
    return RedisBuckets(store.client, key_prefix=store.key_prefix, close_client=False)


def primary_path(transport: str) -> str:
    """The MCP path clients use first: `/sse` for HTTP+SSE servers, `/mcp` otherwise."""
    return "/sse" if transport == "sse" else "/mcp"


def build_endpoints(
    backend: Backend,
    *,
    settings: ProxyRunnerSettings,
    metrics: ProxyMetrics,
    pipeline: Pipeline,
    sharing: SessionSharing | None = None,
) -> Endpoints:
    """The MCP endpoints for `backend`: the stdio bridge over its channels, or the HTTP
    reverse proxy to its URLs; they keep their sessions through `sharing` (default: a store
    of their own, in memory)."""
    store = sharing.store if sharing is not None else None
    address = sharing.address if sharing is not None else None
    forwarder = sharing.forwarder if sharing is not None else None
    if backend.channels is not None:
        bridge = StdioBridge(
            backend.channels, metrics=metrics, probe_era=settings.stdio_era == "auto"
        )
        if backend.bind is not None:
            backend.bind(bridge)
        return BridgeEndpoints(
            bridge,
            settings=settings,
            pipeline=pipeline,
            metrics=metrics,
            store=store,
            address=address,
            forwarder=forwarder,
        )
    if backend.client is not None:
        # The outgoing credential is had last, after the audit gate (`OutgoingAuthStep`).
        pipeline = Pipeline([*pipeline.steps, OutgoingAuthStep(backend.client.auth)])
    return HttpEndpoints(
        list(backend.target_urls),
        transport=backend.transport,
        settings=settings,
        pipeline=pipeline,
        metrics=metrics,
        client=backend.client,
        store=store,
        address=address,
        forwarder=forwarder,
    )


def with_outgoing(
    backend: Backend,
    runconfig: RunConfig,
    *,
    settings: ProxyRunnerSettings,
    registry: CollectorRegistry,
    environ: Mapping[str, str] = os.environ,
) -> Backend:
    """`backend` reached through the upstream client `runconfig` asks for (an HTTP server with
    `outgoing_auth`, or a remote); unchanged for a stdio server or when nothing is added. A
    secret missing from `environ` is a `StartupFailure`."""
    if backend.channels is not None or backend.client is not None:
        return backend
    client = outgoing_client(
        runconfig, environ, registry=registry, cache_size=settings.exchange_cache_size
    )
    return backend if client is None else dataclasses.replace(backend, client=client)


def uses_outgoing(endpoints: Endpoints) -> bool:
    """Whether `endpoints` send outgoing headers, which need the caller of each request."""
    return isinstance(endpoints, HttpEndpoints) and isinstance(endpoints.client, OutgoingClient)


@dataclass(frozen=True, slots=True)
class Reloading:
    """Where new RunConfig texts come from: `watch` runs the reloader on its source (the
    ConfigMap, or the local file); `current` is the RunConfig in force at start."""

    current: RunConfig
    watch: Callable[[RunConfigReloader], Coroutine[Any, Any, None]]
    local: bool = False


async def serve_proxy(
    settings: ProxyRunnerSettings,
    endpoints: Endpoints,
    middleware: Middleware,
    *,
    transport: str,
    registry: CollectorRegistry,
    supervisor: TaskSupervisor,
    stop: asyncio.Event,
    on_listening: Callable[[int], None],
    handle_signals: bool,
    reloading: Reloading | None = None,
    startup: Callable[[], Awaitable[None]] | None = None,
    handover: Handover | None = None,
) -> None:
    """Serve `endpoints` behind `middleware` until `stop` (or SIGTERM/SIGINT with
    `handle_signals`), drain, and run `handover`; a background task that failed meanwhile is
    re-raised."""
    app = make_app(settings, endpoints=endpoints, registry=registry, supervisor=supervisor)
    middleware.install(app, primary_path=primary_path(transport))
    if uses_outgoing(endpoints):
        app.middlewares.append(outgoing_caller)
    await middleware.prefetch()
    if reloading is not None:
        reloader = RunConfigReloader(
            middleware,
            current=reloading.current,
            registry=registry,
            announce=endpoints.announcer(),
            recheck=endpoints.rechecker(),
            local=reloading.local,
        )
        supervisor.spawn("runconfig", reloading.watch(reloader))
    await serve(
        app,
        settings,
        stop=stop,
        on_listening=on_listening,
        handle_signals=handle_signals,
        startup=startup,
        handover=handover,
    )
    supervisor.raise_if_failed()
