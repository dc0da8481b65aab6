"""A proxy runner in front of a remote MCP server, in cluster mode against the real apiserver.

It creates no workload (no StatefulSet, Service or NetworkPolicy), serves the remote to an MCP
client, and writes the remote's `initialize` check to the MCPRemoteProxy's `status.remoteCheck`
through the status subresource, changing nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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
from moorage_core.kube import NETWORKPOLICIES, SERVICES, STATEFULSETS, KubeClient
from moorage_dev.cluster import ControlPlane
from moorage_proxyrunner.startup.cluster import EXIT_OK, ClusterOptions, run_cluster
from moorage_proxyrunner.startup.remote import MCPREMOTEPROXIES

pytestmark = pytest.mark.integration

CRD_NAME = "mcpremoteproxies.moorage.dev"
# A stand-in with a status subresource while crds/manifests has no MCPRemoteProxy; once the
# real CRD lands there, the `crds` fixture registers it and this one is no longer applied.
MINIMAL_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": CRD_NAME},
    "spec": {
        "group": "moorage.dev",
        "scope": "Namespaced",
        "names": {
            "plural": "mcpremoteproxies",
            "singular": "mcpremoteproxy",
            "kind": "MCPRemoteProxy",
        },
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture(scope="session")
def remote_crd(control_plane: ControlPlane, crds: list[str]) -> str:
    if f"customresourcedefinition.apiextensions.k8s.io/{CRD_NAME}" not in crds:
        control_plane.kubectl("apply", "-f", "-", input=json.dumps(MINIMAL_CRD))
        control_plane.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}"
        )
    return CRD_NAME


@pytest_asyncio.fixture
async def remote_proxy(
    kube: KubeClient, namespace: str, remote_crd: str
) -> AsyncIterator[dict[str, Any]]:
    created = await kube.create(
        MCPREMOTEPROXIES,
        {
            "apiVersion": "moorage.dev/v1alpha1",
            "kind": "MCPRemoteProxy",
            "metadata": {"name": "remote", "namespace": namespace},
            "spec": {"remoteUrl": "http://example.invalid/mcp"},
        },
        namespace=namespace,
    )
    yield created
    with contextlib.suppress(NotFound):
        await kube.delete(MCPREMOTEPROXIES, name="remote", namespace=namespace)


def remote_runconfig(tmp_path: Path, namespace: str, owner: dict[str, Any], url: str) -> Path:
    runconfig = RunConfig.model_validate(
        {
            "name": "remote",
            "namespace": namespace,
            "owner": {
                "apiVersion": owner["apiVersion"],
                "kind": owner["kind"],
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
            },
            "transport": "streamable-http",
            "remote": {"url": url, "allow_private_endpoint": True},
        }
    )
    path = tmp_path / "runconfig.json"
    path.write_text(render_runconfig_json(runconfig))
    return path


async def test_a_remote_proxy_serves_the_remote_creates_no_workload_and_reports_its_check(
    kube: KubeClient,
    namespace: str,
    remote_proxy: dict[str, Any],
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    async with serving_toolbox("http") as url:
        config = remote_runconfig(tmp_path, namespace, remote_proxy, url)
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
                assert "echo" in names

            async def reported() -> bool:
                got = await kube.get(MCPREMOTEPROXIES, name="remote", namespace=namespace)
                return "remoteCheck" in got.get("status", {})

            await eventually(reported, timeout=30, message="status.remoteCheck written")
        finally:
            stop.set()
            assert await asyncio.wait_for(task, 60) == EXIT_OK
    got = await kube.get(MCPREMOTEPROXIES, name="remote", namespace=namespace)
    check = got["status"]["remoteCheck"]
    assert check["answered"] is True
    assert check["serverName"] == "moorage-toolbox"
    assert isinstance(check["protocolVersion"], str)
    assert check["checkedAt"].endswith("Z")
    assert set(got["status"]) == {"remoteCheck"}
    assert got["spec"] == {"remoteUrl": "http://example.invalid/mcp"}
    managers = [
        (entry["manager"], entry.get("subresource"))
        for entry in got["metadata"]["managedFields"]
        if entry["manager"] == "moorage-proxyrunner"
    ]
    assert managers == [("moorage-proxyrunner", "status")]
    for kind in (STATEFULSETS, SERVICES, NETWORKPOLICIES):
        assert (await kube.list(kind, namespace=namespace)).items == [], kind
    pods = control_plane.kubectl("get", "pods", "-n", namespace, "-o", "name")
    assert pods.stdout.strip() == ""
