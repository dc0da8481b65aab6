"""The health and metrics app: probes aggregate named checks, metrics render the registry."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Counter

from moorage_core.serving import HealthChecks, make_health_app


async def _ok() -> None:
    return None


async def _broken() -> None:
    raise RuntimeError("cache not synced")


async def test_probes_answer_200_when_every_check_passes() -> None:
    checks = HealthChecks(liveness={"loop": _ok}, readiness={"cache": _ok})
    async with TestClient(TestServer(make_health_app(CollectorRegistry(), checks))) as client:
        for path in ("/healthz", "/readyz"):
            resp = await client.get(path)
            assert resp.status == 200
            assert await resp.text() == "ok"
        verbose = await client.get("/readyz?verbose")
        assert "[+] cache ok" in await verbose.text()


async def test_readyz_names_the_failing_check_with_503() -> None:
    checks = HealthChecks(liveness={"loop": _ok}, readiness={"cache": _broken, "other": _ok})
    async with TestClient(TestServer(make_health_app(CollectorRegistry(), checks))) as client:
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert await resp.text() == "[-] cache: cache not synced\n"
        assert (await client.get("/healthz")).status == 200


async def test_metrics_render_the_injected_registry() -> None:
    registry = CollectorRegistry()
    Counter("moorage_test_things", "things", registry=registry).inc(3)
    async with TestClient(TestServer(make_health_app(registry, HealthChecks()))) as client:
        resp = await client.get("/metrics")
        assert resp.status == 200
        assert "moorage_test_things_total 3.0" in await resp.text()
