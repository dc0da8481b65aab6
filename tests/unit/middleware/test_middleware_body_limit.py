"""The body limit, the chain's first step: a declared oversized body is answered 413 before
authentication or the endpoint sees any of it; other requests pass on."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from testkit.endpoints import Idle
from testkit.mcprequests import INITIALIZE, POST_HEADERS

from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.front.app import make_app
from moorage_proxyrunner.front.metrics import ProxyMetrics
from moorage_proxyrunner.policy.chain import Middleware

LIMIT = 200


class RecordingEndpoints(Idle):
    """Endpoints that answer every POST 200 and remember the bodies they read."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.metrics = ProxyMetrics(registry)
        self.bodies: list[bytes] = []

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/mcp", self.post)

    async def post(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        return web.json_response({"jsonrpc": "2.0", "id": 1, "result": {}})


@contextlib.asynccontextmanager
async def chained() -> AsyncIterator[tuple[TestClient[Any, Any], RecordingEndpoints]]:
    registry = CollectorRegistry()
    settings = ProxyRunnerSettings(port=0, max_body_bytes=LIMIT)
    endpoints = RecordingEndpoints(registry)
    app = make_app(settings, endpoints=endpoints, registry=registry)
    Middleware(settings, registry=registry).install(app)
    async with TestClient(TestServer(app)) as client:
        yield client, endpoints


async def test_a_declared_oversized_body_is_refused_before_the_endpoint() -> None:
    async with chained() as (client, endpoints):
        resp = await client.post("/mcp", data=b"x" * (LIMIT + 1), headers=POST_HEADERS)
        assert resp.status == 413
        assert await resp.json() == {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": -32600, "message": f"Request body exceeds {LIMIT} bytes"},
        }
        assert endpoints.bodies == []
        counted = endpoints.registry.get_sample_value(
            "moorage_proxy_requests_total", {"method": "unknown", "status": "413"}
        )
        assert counted == 1


async def test_a_body_within_the_limit_reaches_the_endpoint() -> None:
    async with chained() as (client, endpoints):
        resp = await client.post("/mcp", json=INITIALIZE, headers=POST_HEADERS)
        assert resp.status == 200
        assert len(endpoints.bodies) == 1
