"""Step 7: the Helm charts on the real node, as the README's Helm install does it.

A platform engineer moves the kustomize install to Helm: `helm upgrade -i --take-ownership` of
both charts into moorage-system (when this module runs alone there is no kustomize install, and
the charts simply install). The pods run Ready on the real node with the images built from
docker/, and an MCPServer reaches Running. Then `helm upgrade` moves the operator to namespace
scope and back to cluster scope: each time the operator pod rolls out, its servers reach Running,
its log holds no refusal, and no binding of the other scope remains. `helm uninstall` removes the
operator's objects and keeps the CRDs.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from realkit import (
    SYSTEM,
    create_namespace,
    dump,
    get,
    ready_pods,
    wait,
    wait_phase,
    wait_ready_pods,
)
from test_05_namespace_overlay import REFUSAL, _server
from testkit.helm import CRDS_CHART, OPERATOR_CHART, run

from moorage_dev.certmanager import CertManager
from moorage_dev.cluster import ControlPlane
from moorage_dev.demo_realnode import admits

REPO = Path(__file__).resolve().parents[3]
TEAM, ELSEWHERE = "helm-team", "helm-elsewhere"
# Which values name which built image (by the name deploy/ gives it).
IMAGE_VALUES = {
    "ghcr.io/moorage/moorage-operator": "operator.image",
    "ghcr.io/moorage/moorage-webhook": "webhook.image",
    "ghcr.io/moorage/moorage-proxyrunner": "operator.proxyRunnerImage",
    "ghcr.io/moorage/moorage-registry-api": "operator.registryApiImage",
}


def helm(plane: ControlPlane, *args: str) -> str:
    return run(*args, kubeconfig=Path(plane.kubeconfig), timeout=600)


def image_flags(images: dict[str, str]) -> list[str]:
    flags: list[str] = []
    for name, key in IMAGE_VALUES.items():
        repository, _, tag = images[name].rpartition(":")
        flags += ["--set", f"{key}.repository={repository}", "--set", f"{key}.tag={tag}"]
    return flags


def deploy(plane: ControlPlane, images: dict[str, str], *, scope: str) -> None:
    """`helm upgrade -i` of the operator chart with `scope`, waiting for its Deployments."""
    flags = ["--set", f"operator.rbac.scope={scope}"]
    if scope == "namespace":
        flags += ["--set", f"operator.rbac.allowedNamespaces={{{TEAM}}}"]
    try:
        helm(
            plane,
            "upgrade",
            "-i",
            "moorage",
            str(OPERATOR_CHART),
            "-n",
            SYSTEM,
            # Over a kustomize install: adopt its objects, and take over the fields kubectl
            # applied server-side (docs/operations.md, "Install with Helm").
            "--take-ownership",
            "--force-conflicts",
            "--wait",
            "--timeout=5m",
            *image_flags(images),
            *flags,
        )
        wait_ready_pods(plane, SYSTEM, "app.kubernetes.io/component=operator", 1, timeout=180)
        wait("the webhook to admit through its Service", lambda: admits(plane), timeout=60)
    except Exception:
        print(dump(plane, SYSTEM))
        raise


def operator_refusals(plane: ControlPlane) -> list[str]:
    (pod,) = ready_pods(plane, SYSTEM, "app.kubernetes.io/component=operator")
    logs = plane.kubectl(
        "logs", "-n", SYSTEM, pod["metadata"]["name"], "-c", "operator", check=False
    ).stdout
    # A namespace an earlier test deleted refuses new content while it terminates (the demo's,
    # say): that 403 is the NamespaceLifecycle admission plugin, not RBAC.
    return [
        line
        for line in logs.splitlines()
        if REFUSAL.search(line) and "because it is being terminated" not in line
    ]


def exists(plane: ControlPlane, *args: str) -> bool:
    out = plane.kubectl("get", *args, "--ignore-not-found", "-o", "name")
    return bool(out.stdout.strip())


def test_helm_installs_both_charts_switches_scope_both_ways_and_uninstalls(
    plane: ControlPlane, images: dict[str, str], cert_manager: CertManager
) -> None:
    namespace = yaml.safe_load((REPO / "deploy" / "base" / "namespace.yaml").read_text())
    create_namespace(plane, SYSTEM, namespace["metadata"]["labels"])
    for name in (TEAM, ELSEWHERE):
        create_namespace(plane, name)
    helm(
        plane,
        "upgrade",
        "-i",
        "moorage-crds",
        str(CRDS_CHART),
        "--take-ownership",
        "--force-conflicts",
        "--wait",
    )

    # Cluster scope: every namespace.
    deploy(plane, images, scope="cluster")
    assert plane.real_node is not None
    for component in ("operator", "webhook"):
        for pod in ready_pods(plane, SYSTEM, f"app.kubernetes.io/component={component}"):
            assert pod["spec"]["nodeName"] == plane.real_node.name
    plane.kubectl("apply", "--server-side", "-f", "-", input=_server("clock", ELSEWHERE))
    wait_phase(plane, ELSEWHERE, "clock", "Running", timeout=240)
    assert operator_refusals(plane) == []

    # Namespace scope: only TEAM; nothing cluster-wide remains for the operator.
    deploy(plane, images, scope="namespace")
    assert not exists(plane, "clusterrolebinding", "moorage-operator")
    assert exists(plane, "rolebinding", "moorage-operator", "-n", TEAM)
    plane.kubectl("apply", "--server-side", "-f", "-", input=_server("clock", TEAM))
    wait_phase(plane, TEAM, "clock", "Running", timeout=240)
    plane.kubectl("apply", "--server-side", "-f", "-", input=_server("late", ELSEWHERE))
    assert operator_refusals(plane) == []
    late = get(plane, "mcpserver", "-n", ELSEWHERE, "late")
    assert not (late.get("status") or {}).get("phase")

    # Back to cluster scope: the RoleBinding goes, the unlisted namespace is served again.
    deploy(plane, images, scope="cluster")
    assert exists(plane, "clusterrolebinding", "moorage-operator")
    assert not exists(plane, "rolebinding", "moorage-operator", "-n", TEAM)
    wait_phase(plane, ELSEWHERE, "late", "Running", timeout=240)
    assert operator_refusals(plane) == []

    # Uninstall: the operator's objects go, the CRDs (and so the MCPServers) stay.
    helm(plane, "uninstall", "moorage", "-n", SYSTEM, "--wait")
    for args in (
        ("deployment", "moorage-operator", "-n", SYSTEM),
        ("deployment", "moorage-webhook", "-n", SYSTEM),
        ("clusterrole", "moorage-operator"),
        ("clusterrolebinding", "moorage-operator"),
        ("validatingwebhookconfiguration", "moorage-webhook"),
    ):
        assert not exists(plane, *args), args
    assert exists(plane, "crd", "mcpservers.moorage.dev")
    assert exists(plane, "mcpserver", "clock", "-n", TEAM)
