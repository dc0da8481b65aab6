"""`run --local`: the proxy on a laptop, with no cluster.

Fronts a local stdio MCP server (the command after `--`, started as a subprocess and restarted
if it dies) or an MCP server already listening on HTTP (`--target-url`), with the same
endpoints and middleware the cluster deployment uses. With `--config PATH` the middleware's
settings come from a RunConfig file, watched for changes like the cluster's ConfigMap.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from moorage_proxyrunner.backends.processes import subprocess_factory
from moorage_proxyrunner.backends.reverse import HttpEndpoints
from moorage_proxyrunner.backends.stdio import StdioBridge
from moorage_proxyrunner.bridging import BridgeEndpoints
from moorage_proxyrunner.frontend import Endpoints, make_app, serve
from moorage_proxyrunner.metrics import ProxyMetrics
from moorage_proxyrunner.middleware import Middleware
from moorage_proxyrunner.pipeline import Pipeline
from moorage_proxyrunner.runconfig_reload import RunConfigReloader, announcer_for
from moorage_proxyrunner.settings import ProxySettings

if TYPE_CHECKING:
    from moorage_api.runconfig import RunConfig
    from moorage_core.kube import KubeClient


@dataclass(frozen=True, slots=True)
class LocalBackend:
    """What to front: a stdio `command`, or HTTP `target_urls` speaking `transport`."""

    transport: str = "stdio"
    command: tuple[str, ...] = ()
    target_urls: tuple[str, ...] = ()


def build_endpoints(
    backend: LocalBackend, *, settings: ProxySettings, metrics: ProxyMetrics, pipeline: Pipeline
) -> Endpoints:
    if backend.transport == "stdio":
        bridge = StdioBridge(subprocess_factory(backend.command), metrics=metrics)
        return BridgeEndpoints(bridge, settings=settings, pipeline=pipeline, metrics=metrics)
    return HttpEndpoints(
        list(backend.target_urls),
        transport=backend.transport,
        settings=settings,
        pipeline=pipeline,
        metrics=metrics,
    )


@dataclass(frozen=True, slots=True)
class LocalConfig:
    """A RunConfig file (`--config`) whose middleware settings are in force and followed."""

    path: Path
    runconfig: RunConfig


@contextlib.asynccontextmanager
async def kube_for(settings: ProxySettings) -> AsyncIterator[KubeClient | None]:
    """A Kubernetes client when authentication takes the cluster's service-account tokens
    (the apiserver has their keys); None otherwise, and no Kubernetes code is loaded."""
    if settings.oidc is None or settings.oidc.type != "kubernetes":
        yield None
        return
    from moorage_core.kube import KubeClient

    kube = await KubeClient.connect(user_agent="moorage-proxyrunner")
    try:
        yield kube
    finally:
        await kube.close()


async def run_local(
    backend: LocalBackend,
    settings: ProxySettings,
    *,
    stop: asyncio.Event | None = None,
    registry: CollectorRegistry | None = None,
    on_listening: Callable[[int], None] | None = None,
    handle_signals: bool = True,
    config: LocalConfig | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT or `stop`; `on_listening` hears the bound port (default:
    print the endpoint URL for the user); `config`: the RunConfig file to follow."""
    registry = registry or CollectorRegistry()
    metrics = ProxyMetrics(registry)
    path = "/sse" if backend.transport == "sse" else "/mcp"

    def announce(port: int) -> None:
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        print(f"MCP endpoint: http://{host}:{port}{path}", flush=True)

    async with kube_for(settings) as kube:
        middleware = Middleware(settings, registry=registry, kube=kube)
        endpoints = build_endpoints(
            backend, settings=settings, metrics=metrics, pipeline=middleware.pipeline
        )
        app = make_app(settings, endpoints=endpoints, registry=registry)
        middleware.install(app, primary_path=path)
        await middleware.prefetch()
        watcher: asyncio.Task[None] | None = None
        if config is not None:
            reloader = RunConfigReloader(
                middleware,
                current=config.runconfig,
                registry=registry,
                announce=announcer_for(endpoints),
                local=True,
            )
            watcher = asyncio.create_task(reloader.watch_file(config.path), name="runconfig")
        try:
            await serve(
                app,
                settings,
                stop=stop,
                on_listening=on_listening or announce,
                handle_signals=handle_signals,
            )
        finally:
            if watcher is not None:
                watcher.cancel()
                await asyncio.wait({watcher})
