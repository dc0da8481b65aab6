"""The registry API over HTTP (aiohttp's test client), and reloads when the mounted data changes
the way a ConfigMap volume changes (a swapped `..data` symlink)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from testkit.waiting import eventually

from moorage_registryserver.app import STORE, make_app
from moorage_registryserver.reloading import DataStore
from moorage_registryserver.settings import RegistryServerSettings

SERVERS = [
    {"name": "time", "description": "Time and timezones", "tags": ["time", "utility"]},
    {"name": "fetch", "description": "Fetches web pages", "tags": ["web"]},
    {"name": "io.github.acme/weather", "description": "Weather forecasts", "tags": ["web"]},
]


class ConfigMapVolume:
    """A directory laid out like a kubelet's ConfigMap volume: `key -> ..data/key`,
    `..data -> ..<version>`; `publish()` writes a new version and swaps `..data` atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.version = 0

    def publish(self, files: dict[str, str]) -> None:
        self.version += 1
        target = self.root / f"..v{self.version}"
        target.mkdir()
        for key, text in files.items():
            (target / key).write_text(text)
            link = self.root / key
            if not link.is_symlink():
                link.symlink_to(Path("..data") / key)
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(target.name)
        os.replace(tmp, self.root / "..data")


def registry_files(servers: list[dict[str, Any]], *, digest: str = "h1") -> dict[str, str]:
    return {
        "registry.json": json.dumps({"format": "toolhive", "version": "1", "servers": servers}),
        "sync_metadata.json": json.dumps({"hash": digest, "timestamp": "2025-01-01T00:00:00Z"}),
    }


@pytest_asyncio.fixture
async def volume(tmp_path: Path) -> ConfigMapVolume:
    vol = ConfigMapVolume(tmp_path)
    vol.publish(registry_files(SERVERS))
    return vol


async def start(data_dir: Path, *, poll: float = 3600.0) -> TestClient[Any, Any]:
    app = make_app(
        RegistryServerSettings(data_dir=data_dir, poll_interval=poll), registry=CollectorRegistry()
    )
    client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


@pytest_asyncio.fixture
async def client(volume: ConfigMapVolume) -> AsyncIterator[TestClient[Any, Any]]:
    c = await start(volume.root)
    yield c
    await c.close()


async def test_lists_every_server_sorted_by_name(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/v0/servers")
    assert resp.status == 200
    body = await resp.json()
    assert [s["name"] for s in body["servers"]] == ["fetch", "io.github.acme/weather", "time"]
    assert body["metadata"] == {"count": 3}


@pytest.mark.parametrize(
    ("query", "names"),
    [
        pytest.param("search=TIME", ["time"], id="search"),
        pytest.param("search=web", ["fetch"], id="search-description"),
        pytest.param("tag=web", ["fetch", "io.github.acme/weather"], id="tag"),
        pytest.param("tag=web&tag=utility", [], id="every-tag"),
        pytest.param("tag=web&search=weather", ["io.github.acme/weather"], id="both"),
    ],
)
async def test_filters_by_search_and_tag(
    client: TestClient[Any, Any], query: str, names: list[str]
) -> None:
    body = await (await client.get(f"/v0/servers?{query}")).json()
    assert [s["name"] for s in body["servers"]] == names


async def test_pages_with_limit_and_cursor(client: TestClient[Any, Any]) -> None:
    first = await (await client.get("/v0/servers?limit=2")).json()
    assert [s["name"] for s in first["servers"]] == ["fetch", "io.github.acme/weather"]
    assert first["metadata"] == {"count": 2, "nextCursor": "io.github.acme/weather"}
    rest = await (
        await client.get("/v0/servers", params={"cursor": "io.github.acme/weather"})
    ).json()
    assert [s["name"] for s in rest["servers"]] == ["time"]


async def test_a_bad_parameter_is_a_json_400(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/v0/servers?limit=many")
    assert resp.status == 400
    assert (await resp.json()) == {"error": "limit: expected a whole number, got 'many'"}


@pytest.mark.parametrize(
    "path",
    [
        "/v0/servers/time",
        "/v0/servers/io.github.acme/weather",
        "/v0/servers/io.github.acme%2Fweather",
    ],
)
async def test_gets_one_server_by_name(client: TestClient[Any, Any], path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 200
    body = await resp.json()
    assert body["name"] == path.removeprefix("/v0/servers/").replace("%2F", "/")


async def test_an_unknown_server_is_a_json_404(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/v0/servers/nope")
    assert resp.status == 404
    assert resp.content_type == "application/json"
    assert (await resp.json()) == {"error": "server 'nope' not found"}


async def test_writes_are_refused(client: TestClient[Any, Any]) -> None:
    resp = await client.post("/v0/servers", data=b"{}")
    assert resp.status == 405


async def test_health_reports_the_data(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/health")
    assert resp.status == 200
    assert await resp.json() == {
        "status": "ok",
        "servers": 3,
        "hash": "h1",
        "lastSync": "2025-01-01T00:00:00Z",
    }


async def test_metrics_count_requests_by_route(client: TestClient[Any, Any]) -> None:
    await client.get("/v0/servers/time")
    await client.get("/v0/servers/nope")
    text = await (await client.get("/metrics")).text()
    assert 'moorage_registry_api_requests_total{code="200",route="/v0/servers/{name}"} 1.0' in text
    assert 'moorage_registry_api_requests_total{code="404",route="/v0/servers/{name}"} 1.0' in text
    assert "moorage_registry_api_servers 3.0" in text
    assert 'moorage_registry_api_reloads_total{result="loaded"} 1.0' in text


async def test_without_data_everything_is_503_until_it_appears(tmp_path: Path) -> None:
    client = await start(tmp_path, poll=0.05)
    try:
        health = await client.get("/health")
        assert health.status == 503
        assert "no registry.json" in (await health.json())["reason"]
        assert (await client.get("/v0/servers")).status == 503
        ConfigMapVolume(tmp_path).publish(registry_files(SERVERS[:1]))

        async def served() -> bool:
            resp = await client.get("/v0/servers")
            return resp.status == 200 and len((await resp.json())["servers"]) == 1

        await eventually(served, message="data published after start is served")
    finally:
        await client.close()


async def test_a_swapped_volume_is_reloaded_while_serving(volume: ConfigMapVolume) -> None:
    client = await start(volume.root, poll=0.05)
    try:
        volume.publish(registry_files(SERVERS[:2], digest="h2"))

        async def reloaded() -> bool:
            body = await (await client.get("/health")).json()
            return body["hash"] == "h2" and body["servers"] == 2

        await eventually(reloaded, message="the new ConfigMap version is served")
    finally:
        await client.close()


async def test_a_rejected_update_keeps_serving_the_last_good_data(volume: ConfigMapVolume) -> None:
    store = DataStore(volume.root)
    assert (await store.refresh()).changed
    assert not (await store.refresh()).changed
    volume.publish({"registry.json": "{not json", "sync_metadata.json": "{}"})
    result = await store.refresh()
    assert result.changed
    assert result.error is not None
    assert "not valid JSON" in result.error
    assert store.catalog is not None
    assert len(store.catalog.servers) == 3
    volume.publish(registry_files(SERVERS[:1], digest="h3"))
    assert (await store.refresh()).error is None
    assert store.catalog.sync["hash"] == "h3"
    assert store.last_error is None


async def test_health_warns_while_serving_older_data(volume: ConfigMapVolume) -> None:
    client = await start(volume.root)
    try:
        volume.publish({"registry.json": "[]"})
        await client.app[STORE].refresh()
        resp = await client.get("/health")
        assert resp.status == 200
        assert "expected an object with a servers array" in (await resp.json())["warning"]
    finally:
        await client.close()
