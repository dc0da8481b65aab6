"""One real-node cluster for the whole real-node suite, installed the way the README says.

The control plane with a real node (`real_node_plane`), cert-manager running against it, the
images built from docker/Dockerfile and imported into the node's containerd, then
`kubectl apply --server-side -k` of the `cluster` overlay with only an `images:` list added.
The modules run in file order: install, examples, failures, monitoring, the namespace overlay,
the demo, Helm (which uninstalls at its end, so a later module applies the install again),
remote proxies, a VirtualMCPServer, and proxy replicas sharing sessions through Redis.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from realkit import install_ready
from testkit.kustomize import Install

from moorage_dev.certmanager import CertManager
from moorage_dev.cluster import ControlPlane
from moorage_dev.images import build_images, import_images, manifest_images

CLUSTER = Install("cluster")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/realnode/" in str(item.path):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.realnode)
            # The first test also waits for the session's set-up: the real node, the images (built
            # once, then cached), cert-manager and the install.
            item.add_marker(pytest.mark.timeout(900))


@pytest.fixture(scope="session")
def plane(real_node_plane: ControlPlane) -> ControlPlane:
    return real_node_plane


@pytest.fixture(scope="session")
def images(plane: ControlPlane) -> dict[str, str]:
    """Manifest image name → the reference built from docker/ and imported into the node."""
    built = build_images(report=print)
    import_images(plane, built, report=print)
    return manifest_images(built)


@pytest.fixture(scope="session")
def cert_manager(plane: ControlPlane) -> Iterator[CertManager]:
    manager = CertManager(plane, report=print)
    manager.start()
    try:
        yield manager
    finally:
        manager.stop()


@pytest.fixture(scope="session")
def installed(plane: ControlPlane, images: dict[str, str], cert_manager: CertManager) -> Install:
    """The `cluster` overlay applied and rolled out: operator and webhook Ready."""
    install_ready(plane, CLUSTER, images)
    return CLUSTER
