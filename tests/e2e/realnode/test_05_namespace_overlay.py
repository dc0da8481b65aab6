"""Step 4: the `namespace` overlay on the real node.

The platform engineer switches from the cluster-wide install to the namespace-scoped one: the
ClusterRoleBinding goes, the namespace overlay is applied over the same objects. The operator
pod, with its own ServiceAccount and only the overlay's RoleBindings, runs servers in the listed
namespaces, leaves the others alone, and is never refused by the apiserver.
"""

from __future__ import annotations

import json
import re

from realkit import (
    SYSTEM,
    apply_install,
    create_namespace,
    get,
    items,
    rollout,
    wait_phase,
    wait_ready_pods,
)
from testkit.kustomize import Install

from moorage_dev.cluster import ControlPlane

TIME_IMAGE = "ghcr.io/moorage-dev/mcp-server-time:2025.9.25"
REFUSAL = re.compile(r"forbidden|(?<![\w.])403(?![\w.])", re.IGNORECASE)


def _server(name: str, namespace: str) -> str:
    return json.dumps(
        {
            "apiVersion": "moorage.dev/v1alpha1",
            "kind": "MCPServer",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"image": TIME_IMAGE, "transport": "stdio", "port": 8080},
        }
    )


def test_namespace_overlay_runs_servers_in_its_namespaces_and_is_never_refused(
    plane: ControlPlane, images: dict[str, str], installed: Install
) -> None:
    for name in ("team-a", "team-b", "elsewhere"):
        create_namespace(plane, name)
    plane.kubectl("delete", "clusterrolebinding", "moorage-operator", "--ignore-not-found")
    apply_install(plane, Install("namespace"), images)
    rollout(plane, SYSTEM, "deployment/moorage-operator", timeout=240)
    (operator,) = wait_ready_pods(
        plane, SYSTEM, "app.kubernetes.io/component=operator", 1, timeout=120
    )
    env = {e["name"]: e.get("value") for e in operator["spec"]["containers"][0]["env"]}
    assert env["WATCH_NAMESPACES"] == "team-a,team-b"
    assert operator["spec"]["serviceAccountName"] == "moorage-operator"

    for namespace in ("team-a", "team-b", "elsewhere"):
        plane.kubectl("apply", "--server-side", "-f", "-", input=_server("clock", namespace))
    for namespace in ("team-a", "team-b"):
        wait_phase(plane, namespace, "clock", "Running", timeout=240)
    # Outside its namespaces the operator neither acts nor writes status.
    elsewhere = get(plane, "mcpserver", "-n", "elsewhere", "clock")
    assert not (elsewhere.get("status") or {}).get("phase")
    assert items(plane, "deployments", "-n", "elsewhere") == []
    logs = plane.kubectl(
        "logs", "-n", SYSTEM, operator["metadata"]["name"], "-c", "operator", check=False
    ).stdout
    refused = [line for line in logs.splitlines() if REFUSAL.search(line)]
    assert refused == []
