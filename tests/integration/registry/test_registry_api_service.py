"""The registry API of an MCPRegistry against the real control plane: Deployment and Service
`<name>-api` with our labels and owner, `apiStatus` from the Deployment, removal when disabled;
and the `moorage-registry-api` process answering over the data the operator stored."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from registry_harness import (
    API_IMAGE,
    get_or_none,
    mcpregistry,
    registry_status,
    run_registry_operator,
)
from testkit.registrydocs import toolhive
from testkit.waiting import eventually

from moorage_core.kube import (
    CONFIGMAPS,
    DEPLOYMENTS,
    MCPREGISTRIES,
    MERGE_PATCH,
    SERVICES,
    KubeClient,
)
from moorage_dev.cluster import ControlPlane, free_port

pytestmark = pytest.mark.integration

LABELS = {
    "app.kubernetes.io/name": "mcpregistry",
    "app.kubernetes.io/instance": "reg",
    "app.kubernetes.io/managed-by": "moorage",
    "app.kubernetes.io/part-of": "moorage",
    "app.kubernetes.io/component": "registry-api",
    "moorage.dev/mcpregistry": "reg",
}


@contextlib.asynccontextmanager
async def registry_api(data_dir: Path) -> AsyncIterator[str]:
    """`moorage-registry-api` as a subprocess on 127.0.0.1; its base URL."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "moorage_registryserver",
        "--data-dir",
        str(data_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-format",
        "json",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@pytest.mark.usefixtures("crds")
async def test_api_service_is_deployed_reported_and_serves_the_stored_data(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    await kube.create(
        CONFIGMAPS,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "catalogue"},
            "data": {"registry.json": toolhive("time", "fetch")},
        },
        namespace=namespace,
    )
    source = {"type": "configMap", "configMap": {"name": "catalogue"}}
    async with run_registry_operator(control_plane, namespace=namespace):
        created = await kube.create(
            MCPREGISTRIES,
            mcpregistry("reg", source=source, apiService={"enabled": True}),
            namespace=namespace,
        )
        uid = created["metadata"]["uid"]

        async def children() -> tuple[dict[str, Any], dict[str, Any]]:
            deployment = await get_or_none(kube, DEPLOYMENTS, name="reg-api", namespace=namespace)
            service = await get_or_none(kube, SERVICES, name="reg-api", namespace=namespace)
            assert deployment is not None
            assert service is not None
            return deployment, service

        deployment, service = await eventually(children, message="API Deployment and Service")
        for obj in (deployment, service):
            assert LABELS.items() <= obj["metadata"]["labels"].items()
            (owner,) = obj["metadata"]["ownerReferences"]
            assert owner["uid"] == uid
            assert owner["controller"] is True
        pod = deployment["spec"]["template"]["spec"]
        assert pod["containers"][0]["image"] == API_IMAGE
        assert pod["volumes"][0]["configMap"]["name"] == "reg-registry-storage"
        assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
        assert service["spec"]["ports"][0]["port"] == 8080
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]

        async def api_ready() -> dict[str, Any]:
            status = await registry_status(kube, name="reg", namespace=namespace)
            assert status.get("apiStatus", {}).get("ready") is True, status
            assert status["phase"] == "Ready"
            return status

        status = await eventually(api_ready, timeout=90, message="API Deployment ready (kwok)")
        assert status["apiStatus"]["endpoint"] == (
            f"http://reg-api.{namespace}.svc.cluster.local:8080"
        )
        conditions = {c["type"]: c["status"] for c in status["conditions"]}
        assert conditions == {"Synced": "True", "APIReady": "True", "Ready": "True"}

        # The API process over exactly what the operator stored.
        storage = await kube.get(CONFIGMAPS, name="reg-registry-storage", namespace=namespace)
        data_dir = tmp_path / "data"
        data_dir.mkdir()
        for key, text in storage["data"].items():
            (data_dir / key).write_text(text)
        async with registry_api(data_dir) as base, aiohttp.ClientSession() as http:

            async def serving() -> dict[str, Any]:
                try:
                    async with http.get(f"{base}/health") as resp:
                        assert resp.status == 200
                        body: dict[str, Any] = await resp.json()
                        return body
                except aiohttp.ClientConnectionError as exc:
                    raise AssertionError(f"not listening yet: {exc}") from exc

            health = await eventually(serving, message="registry API listening")
            assert health["hash"] == status["syncStatus"]["lastSyncHash"]
            assert health["servers"] == 2
            async with http.get(f"{base}/v0/servers") as resp:
                listed = await resp.json()
            assert [s["name"] for s in listed["servers"]] == ["fetch", "time"]
            assert listed["servers"][1]["image"] == "ghcr.io/example/time:1.0"
            async with http.get(f"{base}/v0/servers", params={"search": "FETCH"}) as resp:
                assert [s["name"] for s in (await resp.json())["servers"]] == ["fetch"]
            async with http.get(f"{base}/v0/servers/time") as resp:
                assert resp.status == 200
                assert json.loads(await resp.text())["description"] == "The time server."
            async with http.get(f"{base}/v0/servers/nope") as resp:
                assert resp.status == 404
                assert await resp.json() == {"error": "server 'nope' not found"}

        # Deleted children come back.
        await kube.delete(SERVICES, name="reg-api", namespace=namespace)

        async def restored() -> bool:
            svc = await get_or_none(kube, SERVICES, name="reg-api", namespace=namespace)
            return svc is not None and svc["metadata"]["uid"] != service["metadata"]["uid"]

        await eventually(restored, message="the Service is re-created")

        await kube.patch(
            MCPREGISTRIES,
            {"spec": {"apiService": {"enabled": False}}},
            name="reg",
            namespace=namespace,
            content_type=MERGE_PATCH,
        )

        async def removed() -> bool:
            status = await registry_status(kube, name="reg", namespace=namespace)
            gone = await get_or_none(kube, DEPLOYMENTS, name="reg-api", namespace=namespace)
            svc = await get_or_none(kube, SERVICES, name="reg-api", namespace=namespace)
            return gone is None and svc is None and "apiStatus" not in status

        await eventually(removed, message="API removed when disabled")
