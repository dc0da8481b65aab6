"""The proxy runner's own pod security check against the real apiserver: a RunConfig edited past the
webhook to carry a privileged pod template is not applied, unless an MCPTenant covering the
namespace (read from the apiserver, not from the RunConfig) allows it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import structlog
from runconfig_files import write_runconfig
from testkit.tenants import mcptenant

from moorage_core.errors import NotFound
from moorage_core.kube import STATEFULSETS, KubeClient
from moorage_dev.cluster import ControlPlane
from moorage_proxyrunner.startup.cluster import (
    EXIT_CONFIG,
    EXIT_FAILED,
    ClusterOptions,
    run_cluster,
)

pytestmark = pytest.mark.integration

PRIVILEGED = {
    "spec": {
        "containers": [{"name": "mcp", "securityContext": {"privileged": True}}],
        # Never scheduled: an admitted run applies the StatefulSet, then gives up waiting.
        "nodeSelector": {"moorage.dev/no-such-node": "true"},
    }
}


def options(control_plane: ControlPlane, config: Path) -> ClusterOptions:
    return ClusterOptions(
        config=config,
        host="127.0.0.1",
        port=0,
        kubeconfig=str(control_plane.kubeconfig),
        readiness_timeout=2,
        drain_timeout=2,
    )


async def statefulset_or_none(kube: KubeClient, namespace: str) -> Any:
    try:
        return await kube.get(STATEFULSETS, name="time", namespace=namespace)
    except NotFound:
        return None


async def test_a_runconfig_edited_to_a_privileged_pod_is_not_applied(
    kube: KubeClient,
    control_plane: ControlPlane,
    namespace: str,
    owner: dict[str, Any],
    tmp_path: Path,
) -> None:
    config = write_runconfig(
        tmp_path, namespace=namespace, owner=owner, pod_template_spec=PRIVILEGED
    )
    # An MCPTenant for another namespace allows nothing here.
    async with mcptenant(kube, [f"not-{namespace}"], {"allow": ["Privileged"]}):
        with structlog.testing.capture_logs() as logs:
            assert await run_cluster(options(control_plane, config)) == EXIT_CONFIG
    [refused] = [e for e in logs if e["event"] == "pod_security_refused"]
    assert refused["refusals"] == [
        "spec.podTemplateSpec.spec.containers[0].securityContext.privileged: a privileged "
        "container has full access to its node; refused by the pod security rule Privileged: an "
        f"MCPTenant covering namespace {namespace!r} must allow it (allow: [Privileged])"
    ]
    [failure] = [e for e in logs if e["event"] == "startup_failed"]
    assert f"refusing to apply StatefulSet {namespace}/time" in failure["error"]
    assert await statefulset_or_none(kube, namespace) is None


async def test_an_mcptenant_of_the_namespace_lets_the_proxy_runner_apply_it(
    kube: KubeClient,
    control_plane: ControlPlane,
    namespace: str,
    owner: dict[str, Any],
    tmp_path: Path,
) -> None:
    config = write_runconfig(
        tmp_path, namespace=namespace, owner=owner, pod_template_spec=PRIVILEGED
    )
    async with mcptenant(kube, [namespace], {"allow": ["Privileged"]}):
        # Applied, then never ready (no such node): the run ends with the readiness failure.
        assert await run_cluster(options(control_plane, config)) == EXIT_FAILED
    statefulset = await statefulset_or_none(kube, namespace)
    assert statefulset is not None
    [container] = statefulset["spec"]["template"]["spec"]["containers"]
    assert container["securityContext"]["privileged"] is True
