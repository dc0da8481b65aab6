"""The aggregator in cluster mode against the real apiserver.

It creates no workload, serves its backends' merged tools to an MCP client, and writes the
VirtualMCPServer's `status.backendHealth` and `status.unresolvedConflicts` through the status
subresource (field manager `moorage-proxyrunner`), changing nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from e2e.middleware.middlewarekit import bearer_client
from e2e.proxy.proxykit import serving_toolbox
from testkit.waiting import eventually

from moorage_api.runconfig import RunConfig, render_runconfig_json
from moorage_core.errors import NotFound
from moorage_core.kube import STATEFULSETS, VIRTUALMCPSERVERS, KubeClient
from moorage_dev.cluster import ControlPlane
from moorage_dev.ports import free_port
from moorage_proxyrunner.startup.cluster import EXIT_OK, ClusterOptions, run_cluster

pytestmark = pytest.mark.integration

CRD_NAME = "virtualmcpservers.moorage.dev"


@pytest.fixture(scope="session")
def vmcp_crd(crds: list[str]) -> str:
    assert f"customresourcedefinition.apiextensions.k8s.io/{CRD_NAME}" in crds
    return CRD_NAME


@pytest_asyncio.fixture
async def virtual_server(
    kube: KubeClient, namespace: str, vmcp_crd: str
) -> AsyncIterator[dict[str, Any]]:
    created = await kube.create(
        VIRTUALMCPSERVERS,
        {
            "apiVersion": "moorage.dev/v1alpha1",
            "kind": "VirtualMCPServer",
            "metadata": {"name": "hub", "namespace": namespace},
            "spec": {"groupRef": {"name": "tools"}},
        },
        namespace=namespace,
    )
    yield created
    with contextlib.suppress(NotFound):
        await kube.delete(VIRTUALMCPSERVERS, name="hub", namespace=namespace)


def aggregate_runconfig(
    tmp_path: Path, namespace: str, owner: dict[str, Any], urls: dict[str, str]
) -> Path:
    runconfig = RunConfig.model_validate(
        {
            "name": "hub",
            "namespace": namespace,
            "owner": {
                "apiVersion": owner["apiVersion"],
                "kind": owner["kind"],
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
            },
            "aggregate": {
                "backends": [{"name": name, "url": url} for name, url in urls.items()],
                "conflict_resolution": {"strategy": "manual"},
                "health_check_interval_seconds": 1,
            },
        }
    )
    path = tmp_path / "runconfig.json"
    path.write_text(render_runconfig_json(runconfig))
    return path


async def test_an_aggregator_serves_its_backends_and_reports_their_health(
    kube: KubeClient,
    namespace: str,
    virtual_server: dict[str, Any],
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    down = f"http://127.0.0.1:{free_port()}/mcp"
    async with serving_toolbox("http") as one, serving_toolbox("http") as two:
        urls = {"one": one, "two": two, "gone": down}
        config = aggregate_runconfig(tmp_path, namespace, virtual_server, urls)
        options = ClusterOptions(
            config=config,
            host="127.0.0.1",
            port=0,
            kubeconfig=str(control_plane.kubeconfig),
            drain_timeout=2,
        )
        stop = asyncio.Event()
        listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            run_cluster(options, stop=stop, on_listening=listening.set_result)
        )
        try:
            done, _ = await asyncio.wait(
                {listening, task}, timeout=60, return_when=asyncio.FIRST_COMPLETED
            )
            assert listening in done, f"the proxy ended first: {task}"
            port = listening.result()
            async with bearer_client(f"http://127.0.0.1:{port}/mcp", None) as client:
                names = {tool.name for tool in (await client.list_tools()).tools}
                # Both toolboxes have every name: under manual with no map, none is exposed.
                assert names == set()

            async def reported() -> bool:
                got = await kube.get(VIRTUALMCPSERVERS, name="hub", namespace=namespace)
                health = got.get("status", {}).get("backendHealth", [])
                return [h["healthy"] for h in health] == [True, True, False]

            await eventually(reported, timeout=30, message="status.backendHealth written")
        finally:
            stop.set()
            assert await asyncio.wait_for(task, 60) == EXIT_OK
    got = await kube.get(VIRTUALMCPSERVERS, name="hub", namespace=namespace)
    status = got["status"]
    assert set(status) == {"backendHealth", "unresolvedConflicts"}
    one, two, gone = status["backendHealth"]
    assert (one["name"], one["toolCount"], two["toolCount"]) == ("one", 7, 7)
    assert gone["name"] == "gone"
    assert "cannot connect" in gone["message"]
    assert one["checkedAt"].endswith("Z")
    conflicts = {c["name"]: c["backends"] for c in status["unresolvedConflicts"]}
    assert conflicts["echo"] == ["one", "two"]
    assert got["spec"] == virtual_server["spec"]
    managers = [
        (entry["manager"], entry.get("subresource"))
        for entry in got["metadata"]["managedFields"]
        if entry["manager"] == "moorage-proxyrunner"
    ]
    assert managers == [("moorage-proxyrunner", "status")]
    assert (await kube.list(STATEFULSETS, namespace=namespace)).items == []
