"""Step 1: the `cluster` overlay on the real node, as the README's install section does it."""

from __future__ import annotations

import pytest
from realkit import SYSTEM, get, lease_holder, ready_pods, wait
from testkit.kustomize import Install

from moorage_dev.cluster import ControlPlane

COMPONENTS = ("operator", "webhook")


def _exec(plane: ControlPlane, pod: str, *command: str) -> tuple[int, str]:
    out = plane.kubectl("exec", "-n", SYSTEM, pod, "--", *command, check=False)
    return out.returncode, out.stdout + out.stderr


def test_the_namespace_enforces_restricted_pod_security(
    plane: ControlPlane, installed: Install
) -> None:
    labels = get(plane, "namespace", SYSTEM)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("component", COMPONENTS)
def test_pods_run_ready_on_the_real_node_as_65534_with_a_read_only_root(
    plane: ControlPlane, installed: Install, component: str
) -> None:
    assert plane.real_node is not None
    running = ready_pods(plane, SYSTEM, f"app.kubernetes.io/component={component}")
    assert running, f"no Ready {component} pod"
    for pod in running:
        name = pod["metadata"]["name"]
        assert pod["spec"]["nodeName"] == plane.real_node.name
        assert all(s["ready"] for s in pod["status"]["containerStatuses"])
        code, uid = _exec(
            plane, name, "python3", "-c", "import os; print(os.getuid(), os.getgid())"
        )
        assert (code, uid.strip()) == (0, "65534 65534"), uid
        code, out = _exec(plane, name, "python3", "-c", "open('/probe', 'w')")
        assert code != 0
        assert "Read-only file system" in out
        code, out = _exec(plane, name, "python3", "-c", "open('/tmp/probe', 'w').write('ok')")
        assert code == 0, out


def test_an_operator_pod_holds_the_leader_lease(plane: ControlPlane, installed: Install) -> None:
    operators = {
        p["metadata"]["name"]
        for p in ready_pods(plane, SYSTEM, "app.kubernetes.io/component=operator")
    }
    holder = wait("a Lease holder", lambda: lease_holder(plane), timeout=60)
    assert holder in operators
