"""The registry API of an MCPRegistry with `apiService.enabled`: Deployment and Service
`<name>-api` (spec §2.3).

Pure. The Deployment runs `moorage-registry-api --data-dir /data --port 8080` with the storage
ConfigMap mounted at `/data` (optional, so the pod starts before the first sync; the kubelet
fills the volume when the ConfigMap appears, and the API reloads when it changes). Restricted
pod security: non-root, read-only root filesystem, no privilege escalation, all capabilities
dropped, seccomp `RuntimeDefault`, no service-account token (the API never calls the apiserver).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from moorage_api.constants import (
    COMPONENT_REGISTRY_API,
    LABEL_COMPONENT,
    LABEL_MCPREGISTRY,
    REGISTRY_API_PORT,
)
from moorage_api.naming import registry_api_name, registry_storage_configmap_name
from moorage_operator.planning.mcpregistries.children import JsonObject, Owner, child_metadata

CONTAINER_REGISTRY_API: Final = "registry-api"
DATA_DIR: Final = "/data"
DATA_VOLUME: Final = "registry-data"
PORT_NAME: Final = "http"
RUN_AS_USER: Final = 65534


def api_selector(owner: Owner) -> dict[str, str]:
    """Selector of the API's pods (immutable once the Deployment exists)."""
    return {LABEL_MCPREGISTRY: owner.name, LABEL_COMPONENT: COMPONENT_REGISTRY_API}


def desired_api_deployment(owner: Owner, *, image: str) -> JsonObject:
    """The registry API's Deployment."""
    name = registry_api_name(owner.name)
    meta = child_metadata(owner, name=name, component=COMPONENT_REGISTRY_API)
    probe: JsonObject = {
        "httpGet": {"path": "/health", "port": PORT_NAME},
        "periodSeconds": 10,
        "timeoutSeconds": 2,
    }
    container: JsonObject = {
        "name": CONTAINER_REGISTRY_API,
        "image": image,
        "args": ["--data-dir", DATA_DIR, "--port", str(REGISTRY_API_PORT)],
        "ports": [{"name": PORT_NAME, "containerPort": REGISTRY_API_PORT, "protocol": "TCP"}],
        "readinessProbe": probe,
        # Liveness does not depend on the data: a registry not yet synced is not a dead process.
        "livenessProbe": {
            "tcpSocket": {"port": PORT_NAME},
            "periodSeconds": 20,
            "timeoutSeconds": 2,
        },
        "resources": {
            "requests": {"cpu": "10m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"},
        },
        "volumeMounts": [{"name": DATA_VOLUME, "mountPath": DATA_DIR, "readOnly": True}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": api_selector(owner)},
            "template": {
                "metadata": {"labels": dict(meta["labels"])},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS_USER,
                        "runAsGroup": RUN_AS_USER,
                        "fsGroup": RUN_AS_USER,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [
                        {
                            "name": DATA_VOLUME,
                            "configMap": {
                                "name": registry_storage_configmap_name(owner.name),
                                "optional": True,
                            },
                        }
                    ],
                },
            },
        },
    }


def desired_api_service(owner: Owner) -> JsonObject:
    """The registry API's ClusterIP Service (port 8080)."""
    name = registry_api_name(owner.name)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(owner, name=name, component=COMPONENT_REGISTRY_API),
        "spec": {
            "type": "ClusterIP",
            "selector": api_selector(owner),
            "ports": [
                {
                    "name": PORT_NAME,
                    "port": REGISTRY_API_PORT,
                    "targetPort": PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def is_deployment_ready(deployment: Mapping[str, Any] | None) -> bool:
    """Whether the API Deployment has a ready replica of its current spec."""
    if deployment is None:
        return False
    status = deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and (observed is None or observed < generation):
        return False
    return int(status.get("readyReplicas") or 0) >= 1
