"""`run --local`: the proxy on a laptop, with no cluster.

Fronts a local stdio MCP server (the command after `--`, started as a subprocess and restarted
if it dies) or an MCP server already listening on HTTP (`--target-url`), with the same
endpoints and middleware the cluster deployment uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from moorage_proxyrunner.backends.processes import subprocess_factory
from moorage_proxyrunner.backends.reverse import HttpEndpoints
from moorage_proxyrunner.backends.stdio import StdioBridge
from moorage_proxyrunner.bridging import BridgeEndpoints
from moorage_proxyrunner.frontend import Endpoints, make_app, serve
from moorage_proxyrunner.metrics import ProxyMetrics
from moorage_proxyrunner.pipeline import Pipeline
from moorage_proxyrunner.settings import ProxySettings
from moorage_proxyrunner.toolfilter import ToolFilterStep


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


def default_pipeline(settings: ProxySettings) -> Pipeline:
    """The middleware chain; authentication, audit and authorisation join it here."""
    return Pipeline([ToolFilterStep(settings.tool_policy)])


async def run_local(
    backend: LocalBackend,
    settings: ProxySettings,
    *,
    stop: asyncio.Event | None = None,
    registry: CollectorRegistry | None = None,
    on_listening: Callable[[int], None] | None = None,
    handle_signals: bool = True,
) -> None:
    """Serve until SIGTERM/SIGINT or `stop`; `on_listening` hears the bound port (default:
    print the endpoint URL for the user)."""
    registry = registry or CollectorRegistry()
    metrics = ProxyMetrics(registry)
    endpoints = build_endpoints(
        backend, settings=settings, metrics=metrics, pipeline=default_pipeline(settings)
    )
    app = make_app(settings, endpoints=endpoints, registry=registry)

    def announce(port: int) -> None:
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        path = "/sse" if backend.transport == "sse" else "/mcp"
        print(f"MCP endpoint: http://{host}:{port}{path}", flush=True)

    await serve(
        app,
        settings,
        stop=stop,
        on_listening=on_listening or announce,
        handle_signals=handle_signals,
    )
