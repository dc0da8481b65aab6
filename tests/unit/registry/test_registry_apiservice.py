"""The registry API's Deployment and Service: names, labels, owner, security, readiness."""

from __future__ import annotations

from typing import Any

import pytest

from moorage_operator.planning.mcpregistries.apiservice import (
    desired_api_deployment,
    desired_api_service,
    is_deployment_ready,
)
from moorage_operator.planning.mcpregistries.children import Owner

OWNER = Owner(name="reg", namespace="ns", uid="uid-1")
LABELS = {
    "app.kubernetes.io/name": "mcpregistry",
    "app.kubernetes.io/instance": "reg",
    "app.kubernetes.io/managed-by": "moorage",
    "app.kubernetes.io/part-of": "moorage",
    "app.kubernetes.io/component": "registry-api",
    "moorage.dev/mcpregistry": "reg",
}


def test_deployment_runs_the_api_on_the_storage_with_restricted_security() -> None:
    dep = desired_api_deployment(OWNER, image="moorage/registry-api:1")
    assert dep["metadata"]["name"] == "reg-api"
    assert dep["metadata"]["namespace"] == "ns"
    assert dep["metadata"]["labels"] == LABELS
    assert dep["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert dep["metadata"]["ownerReferences"][0]["controller"] is True
    spec = dep["spec"]
    selector = spec["selector"]["matchLabels"]
    assert selector == {
        "moorage.dev/mcpregistry": "reg",
        "app.kubernetes.io/component": "registry-api",
    }
    pod = spec["template"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "moorage/registry-api:1"
    assert container["args"] == ["--data-dir", "/data", "--port", "8080"]
    assert container["ports"][0]["containerPort"] == 8080
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["runAsNonRoot"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False
    (volume,) = pod["spec"]["volumes"]
    assert volume["configMap"] == {"name": "reg-registry-storage", "optional": True}
    assert container["volumeMounts"][0]["mountPath"] == "/data"


def test_service_exposes_port_8080_to_the_api_pods() -> None:
    svc = desired_api_service(OWNER)
    assert svc["metadata"]["name"] == "reg-api"
    assert svc["metadata"]["labels"] == LABELS
    assert (
        svc["spec"]["selector"]
        == desired_api_deployment(OWNER, image="i")["spec"]["selector"]["matchLabels"]
    )
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]


@pytest.mark.parametrize(
    ("deployment", "ready"),
    [
        pytest.param(None, False, id="absent"),
        pytest.param({"metadata": {"generation": 1}, "status": {}}, False, id="no-status"),
        pytest.param(
            {
                "metadata": {"generation": 2},
                "status": {"observedGeneration": 1, "readyReplicas": 1},
            },
            False,
            id="old-generation",
        ),
        pytest.param(
            {
                "metadata": {"generation": 2},
                "status": {"observedGeneration": 2, "readyReplicas": 1},
            },
            True,
            id="ready",
        ),
        pytest.param(
            {
                "metadata": {"generation": 2},
                "status": {"observedGeneration": 2, "readyReplicas": 0},
            },
            False,
            id="none-ready",
        ),
    ],
)
def test_is_deployment_ready(deployment: dict[str, Any] | None, ready: bool) -> None:
    assert is_deployment_ready(deployment) is ready
