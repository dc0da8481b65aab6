"""MCPRegistry git sources on the operator's own host, against the real control plane: without
REGISTRY_ALLOW_LOCAL_SOURCES the operator refuses `file://` and a host name that resolves to
loopback, and says so in the status; with it, the same `file://` repository syncs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from registry_harness import mcpregistry, registry_status, run_registry_operator
from testkit.gitrepos import GitRepo
from testkit.registrydocs import toolhive
from testkit.waiting import eventually

from moorage_core.kube import MCPREGISTRIES, KubeClient
from moorage_dev.cluster import ControlPlane

pytestmark = pytest.mark.integration


def git(repository: str) -> dict[str, Any]:
    return {"type": "git", "git": {"repository": repository, "path": "registry.json"}}


async def failed_with(kube: KubeClient, namespace: str, name: str, fragment: str) -> None:
    async def refused() -> bool:
        status = await registry_status(kube, name=name, namespace=namespace)
        message = (status.get("syncStatus") or {}).get("message", "")
        return status.get("phase") == "Failed" and fragment in message

    await eventually(refused, timeout=60, message=f"{name} refused: {fragment}")


@pytest.mark.usefixtures("crds")
async def test_local_sources_are_refused_by_default_and_synced_when_allowed(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    repo = GitRepo(tmp_path / "origin")
    repo.commit({"registry.json": toolhive("one")})
    sources = {
        "files": git(repo.url),
        "loopback": git("https://localhost:9/team/registry.git"),
    }
    for name, source in sources.items():
        await kube.create(MCPREGISTRIES, mcpregistry(name, source=source), namespace=namespace)
    async with run_registry_operator(control_plane, namespace=namespace, allow_local_sources=False):
        await failed_with(kube, namespace, "files", "file:// reads the operator's own filesystem")
        await failed_with(kube, namespace, "loopback", "host localhost is a loopback address")
    async with run_registry_operator(control_plane, namespace=namespace):

        async def synced() -> bool:
            status = await registry_status(kube, name="files", namespace=namespace)
            return status.get("phase") == "Ready"

        await eventually(synced, timeout=60, message="the file:// source syncs when allowed")
