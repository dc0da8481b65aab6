"""The real control plane every integration test runs against.

One control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok with one fake
Ready node) is started per test session on 127.0.0.1 in a temporary state directory, with binaries
from the cache outside the repository (built on first use). Tests share it and keep to their own
namespace; cluster-scoped objects they create are removed in their own teardown.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from testkit.waiting import eventually

from moorage_core.errors import NotFound
from moorage_core.kube import NAMESPACES, SERVICEACCOUNTS, KubeClient
from moorage_dev.cluster import ControlPlane

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds" / "manifests"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path_factory.mktemp("controlplane"), report=print)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def crds(control_plane: ControlPlane) -> list[str]:
    """Our CRDs from crds/manifests, applied and Established; their names."""
    files = sorted(p for p in CRD_DIR.glob("*.yaml") if p.name != "kustomization.yaml")
    if not files:
        pytest.fail(f"no CRDs in {CRD_DIR}: run `uv run python -m moorage_api.crdgen`")
    names: list[str] = []
    for path in files:
        out = control_plane.kubectl("apply", "--server-side", "-f", str(path), "-o", "name")
        names.extend(line.strip() for line in out.stdout.splitlines() if line.strip())
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)
    return names


@pytest_asyncio.fixture
async def kube(control_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    client = await KubeClient.connect(
        kubeconfig=str(control_plane.kubeconfig), user_agent="moorage-tests"
    )
    try:
        yield client
    finally:
        await client.close()


@pytest_asyncio.fixture
async def namespace(kube: KubeClient) -> AsyncIterator[str]:
    """A fresh namespace whose `default` ServiceAccount exists (so pods can be admitted)."""
    name = f"t-{secrets.token_hex(4)}"
    await kube.create(
        NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )

    async def default_sa_exists() -> bool:
        try:
            await kube.get(SERVICEACCOUNTS, namespace=name, name="default")
        except NotFound:
            return False
        return True

    await eventually(default_sa_exists, timeout=30, message="default ServiceAccount")
    try:
        yield name
    finally:
        with contextlib.suppress(NotFound):
            await kube.delete(NAMESPACES, name=name, propagation_policy="Background")


def kubectl_json(plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    """`kubectl ... -o json` against the test control plane."""
    return plane.kubectl(*args, "-o", "json")
