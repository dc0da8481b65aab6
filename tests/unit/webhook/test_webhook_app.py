"""The admission app over HTTP (aiohttp's test client): status codes, metrics, logs, probes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs
from webhook_samples import (
    mcpexternalauthconfig,
    mcpgroup,
    mcpregistry,
    mcpremoteproxy,
    mcpserver,
    mcptoolconfig,
    review,
    review_bytes,
    virtualmcpserver,
)

from moorage_core.serving import HealthChecks
from moorage_webhook.admission import ENDPOINTS, KindEndpoint
from moorage_webhook.app import make_app
from moorage_webhook.metrics import WebhookMetrics
from moorage_webhook.settings import WebhookSettings
from moorage_webhook.validation import Verdict

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest_asyncio.fixture
async def client(registry: CollectorRegistry) -> AsyncIterator[TestClient[Any, Any]]:
    app = make_app(
        WebhookSettings(max_request_bytes=64 * 1024), metrics=WebhookMetrics.create(registry)
    )
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def _count(registry: CollectorRegistry, **labels: str) -> float:
    value = registry.get_sample_value("moorage_webhook_requests_total", labels)
    return value or 0.0


@pytest.mark.parametrize(
    ("path", "obj"),
    [
        ("/validate/mcpserver", mcpserver()),
        ("/validate/mcptoolconfig", mcptoolconfig({"toolsFilter": ["a"]})),
        (
            "/validate/mcpregistry",
            mcpregistry({"type": "configMap", "configMap": {"name": "servers"}}),
        ),
        ("/validate/mcpremoteproxy", mcpremoteproxy()),
        ("/validate/mcpexternalauthconfig", mcpexternalauthconfig({"type": "unauthenticated"})),
        ("/validate/mcpgroup", mcpgroup()),
        ("/validate/virtualmcpserver", virtualmcpserver()),
    ],
)
async def test_each_kind_has_its_endpoint(
    client: TestClient[Any, Any], path: str, obj: dict[str, Any]
) -> None:
    resp = await client.post(path, data=review_bytes(review(obj, uid="k-1")), headers=JSON)
    assert resp.status == 200
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert body["response"] == {"uid": "k-1", "allowed": True}


async def test_a_denial_is_counted_and_logged_once(
    client: TestClient[Any, Any], registry: CollectorRegistry
) -> None:
    document = review(mcpserver({"image": "nginx@sha256:" + "a" * 40}), uid="d-1")
    with capture_logs() as logs:
        resp = await client.post("/validate/mcpserver", data=review_bytes(document), headers=JSON)
    body = await resp.json()
    assert body["response"]["allowed"] is False
    assert (
        _count(registry, kind="MCPServer", operation="CREATE", allowed="false", code="422") == 1.0
    )
    assert (
        registry.get_sample_value(
            "moorage_webhook_request_duration_seconds_count", {"kind": "MCPServer"}
        )
        == 1.0
    )
    reviews = [entry for entry in logs if entry["event"] == "review_finished"]
    assert len(reviews) == 1
    entry = reviews[0]
    assert entry["uid"] == "d-1"
    assert entry["kind"] == "MCPServer"
    assert entry["operation"] == "CREATE"
    assert entry["user"] == "alice"
    assert entry["allowed"] is False
    assert entry["message"].startswith("spec.image: ")
    assert entry["duration_ms"] >= 0


async def test_a_content_type_other_than_json_gets_415(
    client: TestClient[Any, Any], registry: CollectorRegistry
) -> None:
    resp = await client.post(
        "/validate/mcpserver",
        data=review_bytes(review(mcpserver())),
        headers={"Content-Type": "application/yaml"},
    )
    assert resp.status == 415
    assert "Content-Type must be application/json" in await resp.text()
    assert _count(registry, kind="MCPServer", operation="unknown", allowed="error", code="415")


async def test_json_with_a_charset_is_json(client: TestClient[Any, Any]) -> None:
    resp = await client.post(
        "/validate/mcpserver",
        data=review_bytes(review(mcpserver())),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert resp.status == 200


async def test_an_oversized_body_gets_413(
    client: TestClient[Any, Any], registry: CollectorRegistry
) -> None:
    obj = mcpserver({"args": ["x" * 70_000]})
    resp = await client.post("/validate/mcpserver", data=review_bytes(review(obj)), headers=JSON)
    assert resp.status == 413
    assert _count(registry, kind="MCPServer", operation="unknown", allowed="error", code="413")


async def test_an_oversized_body_without_length_gets_413(client: TestClient[Any, Any]) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 8192

    resp = await client.post("/validate/mcpserver", data=chunks(), headers=JSON)
    assert resp.status == 413


async def test_malformed_json_gets_400(client: TestClient[Any, Any]) -> None:
    resp = await client.post("/validate/mcpserver", data=b'{"apiVersion":', headers=JSON)
    assert resp.status == 400
    assert "not JSON" in await resp.text()


async def test_only_post_is_accepted(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/validate/mcpserver")).status == 405
    assert (await client.post("/validate/pods", data=b"{}", headers=JSON)).status == 404


async def test_a_crash_in_validation_answers_500_and_is_logged(
    registry: CollectorRegistry,
) -> None:
    def explode(new: dict[str, Any], *, old: dict[str, Any] | None) -> Verdict:
        raise RuntimeError("rule bug")

    endpoints = [KindEndpoint("/validate/mcpserver", "MCPServer", explode)]
    app = make_app(WebhookSettings(), metrics=WebhookMetrics.create(registry), endpoints=endpoints)
    async with TestClient(TestServer(app)) as test_client:
        with capture_logs() as logs:
            resp = await test_client.post(
                "/validate/mcpserver", data=review_bytes(review(mcpserver())), headers=JSON
            )
    assert resp.status == 500
    assert [e["event"] for e in logs] == ["review_crashed", "review_finished"]
    assert _count(registry, kind="MCPServer", operation="unknown", allowed="error", code="500")


async def test_probes_are_served_on_the_admission_port() -> None:
    async def not_ready() -> None:
        raise RuntimeError("certificate expired")

    app = make_app(WebhookSettings(), checks=HealthChecks(readiness={"certificate": not_ready}))
    async with TestClient(TestServer(app)) as test_client:
        healthz = await test_client.get("/healthz")
        assert (healthz.status, await healthz.text()) == (200, "ok")
        readyz = await test_client.get("/readyz")
        assert readyz.status == 503
        assert "certificate expired" in await readyz.text()


async def test_every_endpoint_is_routed() -> None:
    app = make_app(WebhookSettings())
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert {e.path for e in ENDPOINTS} | {"/healthz", "/readyz"} <= paths


def test_response_bodies_are_compact_json() -> None:
    from moorage_webhook.admission import review_body

    outcome = review_body(ENDPOINTS[0], json.dumps(review(mcpserver())).encode())
    assert b" " not in outcome.body
