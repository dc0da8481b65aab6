"""A backend loop that dies ends the proxy's serving with its error instead of leaving a proxy
that answers but can never reach its MCP server."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from moorage_core.supervising import TaskSupervisor
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.front.app import make_app, serve


class _DyingBackend:
    """Endpoints whose connection loop crashes soon after start."""

    def add_routes(self, app: web.Application) -> None:
        return None

    async def start(self, supervisor: TaskSupervisor | None = None) -> None:
        assert supervisor is not None

        async def connect() -> None:
            await asyncio.sleep(0.05)
            raise ValueError("the backend loop broke")

        supervisor.spawn("stdio-bridge", connect())

    async def close_streams(self) -> None:
        return None

    def unanswered(self) -> int:
        return 0

    async def stop(self) -> None:
        return None

    def is_ready(self) -> bool:
        return False


async def test_a_backend_loop_that_dies_ends_serving_with_its_error() -> None:
    stop = asyncio.Event()
    supervisor = TaskSupervisor(on_failure=stop.set)
    settings = ProxyRunnerSettings(port=0, drain_timeout=1.0)
    app = make_app(
        settings, endpoints=_DyingBackend(), registry=CollectorRegistry(), supervisor=supervisor
    )
    await asyncio.wait_for(serve(app, settings, stop=stop, handle_signals=False), timeout=10)
    with pytest.raises(ValueError, match="the backend loop broke"):
        supervisor.raise_if_failed()
    await supervisor.aclose()
