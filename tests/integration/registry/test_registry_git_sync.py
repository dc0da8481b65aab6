"""MCPRegistry from git against the real control plane: a repository this test creates
(`file://`), synced at a branch, a tag and a commit; a new commit is picked up on the next
interval by an automatic registry, and only on request by a manual one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from registry_harness import mcpregistry, registry_status, run_registry_operator, stored_servers
from testkit.gitrepos import GitRepo
from testkit.registrydocs import toolhive
from testkit.waiting import eventually

from moorage_core.kube import MCPREGISTRIES, MERGE_PATCH, KubeClient
from moorage_dev.cluster import ControlPlane

pytestmark = pytest.mark.integration


def git_source(repo: GitRepo, **ref: str) -> dict[str, Any]:
    return {
        "type": "git",
        "git": {"repository": repo.url, "path": "catalogue/registry.json", **ref},
    }


async def wait_for_servers(kube: KubeClient, namespace: str, name: str, *servers: str) -> None:
    async def synced() -> bool:
        stored = await stored_servers(kube, name=name, namespace=namespace)
        status = await registry_status(kube, name=name, namespace=namespace)
        assert status.get("phase") == "Ready", status
        assert status["syncStatus"]["serverCount"] == len(servers), status
        return stored == list(servers)

    await eventually(synced, timeout=60, message=f"{name} holds {servers}")


@pytest.mark.usefixtures("crds")
async def test_git_source_syncs_branch_tag_and_commit_and_follows_the_branch(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    repo = GitRepo(tmp_path / "origin")
    first = repo.commit({"catalogue/registry.json": toolhive("one")})
    repo.tag("v1")
    repo.commit({"catalogue/registry.json": toolhive("one", "two")})
    async with run_registry_operator(control_plane, namespace=namespace):
        registries = {
            "branch": git_source(repo, branch="main"),
            "tag": git_source(repo, tag="v1"),
            "commit": git_source(repo, commit=first),
            "short-commit": git_source(repo, commit=first[:10]),
        }
        for name, source in registries.items():
            await kube.create(MCPREGISTRIES, mcpregistry(name, source=source), namespace=namespace)
        await kube.create(
            MCPREGISTRIES,
            mcpregistry(
                "manual", source=git_source(repo, branch="main"), syncPolicy={"automatic": False}
            ),
            namespace=namespace,
        )
        await asyncio.gather(
            wait_for_servers(kube, namespace, "branch", "one", "two"),
            wait_for_servers(kube, namespace, "manual", "one", "two"),
            wait_for_servers(kube, namespace, "tag", "one"),
            wait_for_servers(kube, namespace, "commit", "one"),
            wait_for_servers(kube, namespace, "short-commit", "one"),
        )
        status = await registry_status(kube, name="tag", namespace=namespace)
        assert status["syncStatus"]["message"] == (
            f"Synced 1 server from git repository {repo.url} at {first[:12]}"
        )

        repo.commit({"catalogue/registry.json": toolhive("one", "two", "three")})
        # The automatic registry picks the commit up on its next interval (test override: 2s).
        await wait_for_servers(kube, namespace, "branch", "one", "three", "two")
        # The manual one has had the same time and more, and did not sync by itself.
        assert await stored_servers(kube, name="manual", namespace=namespace) == ["one", "two"]
        # Pinned refs do not move.
        assert await stored_servers(kube, name="tag", namespace=namespace) == ["one"]
        assert await stored_servers(kube, name="commit", namespace=namespace) == ["one"]

        await kube.patch(
            MCPREGISTRIES,
            {"metadata": {"annotations": {"moorage.dev/sync": "true"}}},
            name="manual",
            namespace=namespace,
            content_type=MERGE_PATCH,
        )
        await wait_for_servers(kube, namespace, "manual", "one", "three", "two")


@pytest.mark.usefixtures("crds")
async def test_git_failures_keep_the_data_and_retry(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    repo = GitRepo(tmp_path / "origin")
    repo.commit({"catalogue/registry.json": toolhive("one")})
    async with run_registry_operator(control_plane, namespace=namespace):
        await kube.create(
            MCPREGISTRIES,
            mcpregistry("reg", source=git_source(repo, branch="main")),
            namespace=namespace,
        )
        await wait_for_servers(kube, namespace, "reg", "one")

        repo.commit({"catalogue/registry.json": "{ not json"})

        async def failing() -> dict[str, Any]:
            status = await registry_status(kube, name="reg", namespace=namespace)
            assert status.get("phase") == "Failed", status
            assert status["syncStatus"]["attemptCount"] >= 2, "retried with back-off"
            return status

        status = await eventually(failing, timeout=60, message="failing and retrying")
        assert (
            "is not valid toolhive data: line 1 column 3: expected valid JSON"
            in (status["syncStatus"]["message"])
        )
        assert await stored_servers(kube, name="reg", namespace=namespace) == ["one"]

        repo.commit({"catalogue/registry.json": toolhive("one", "two")})
        await wait_for_servers(kube, namespace, "reg", "one", "two")

        await kube.patch(
            MCPREGISTRIES,
            {"spec": {"source": {"git": {"branch": "missing"}}}},
            name="reg",
            namespace=namespace,
            content_type=MERGE_PATCH,
        )

        async def missing_branch() -> bool:
            status = await registry_status(kube, name="reg", namespace=namespace)
            message = (status.get("syncStatus") or {}).get("message") or ""
            return status.get("phase") == "Failed" and "(branch missing)" in message

        await eventually(missing_branch, message="unknown branch reported")
        assert await stored_servers(kube, name="reg", namespace=namespace) == ["one", "two"]


@pytest.mark.usefixtures("crds")
async def test_a_registry_too_big_for_a_configmap_fails_with_advice(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    repo = GitRepo(tmp_path / "origin")
    repo.commit({"catalogue/registry.json": toolhive(*(f"server-{i:05d}" for i in range(6000)))})
    async with run_registry_operator(control_plane, namespace=namespace):
        await kube.create(
            MCPREGISTRIES,
            mcpregistry("big", source=git_source(repo, branch="main")),
            namespace=namespace,
        )

        async def refused() -> dict[str, Any]:
            status = await registry_status(kube, name="big", namespace=namespace)
            assert status.get("phase") == "Failed", status
            return status

        status = await eventually(refused, timeout=60, message="oversized registry refused")
        message = status["syncStatus"]["message"]
        assert "MiB, more than a ConfigMap holds (1 MiB); keep fewer servers with spec.filter" in (
            message
        )
        assert await stored_servers(kube, name="big", namespace=namespace) is None

        await kube.patch(
            MCPREGISTRIES,
            {"spec": {"filter": {"names": {"include": ["server-0000?"]}}}},
            name="big",
            namespace=namespace,
            content_type=MERGE_PATCH,
        )
        await wait_for_servers(kube, namespace, "big", *(f"server-{i:05d}" for i in range(10)))
