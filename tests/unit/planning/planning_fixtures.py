"""Builders of MCPServers, MCPToolConfigs and ConfigMaps for the planning tests."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from moorage_api.mcpserver import MCPServer, parse_mcpserver

NAMESPACE = "team-a"
UID = "0b7a3c1e-5f0d-4c1b-9b8e-1d2f3a4b5c6d"
IMAGE = "ghcr.io/example/mcp-time:1.2.0"
PROXY_IMAGE = "registry.example/moorage/proxyrunner:9.9.9"


@dataclass(frozen=True, slots=True)
class FakeSettings:
    """Stands in for the operator's Settings: only what the planners read."""

    proxyrunner_image: str = PROXY_IMAGE
    cluster_domain: str = "cluster.local"


SETTINGS = FakeSettings()


def raw_server(name: str = "time", **spec: Any) -> dict[str, Any]:
    """A stored MCPServer as the apiserver returns it; `spec` in wire (camelCase) names."""
    body: dict[str, Any] = {"image": IMAGE}
    body.update(spec)
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPServer",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": UID,
            "generation": 3,
            "resourceVersion": "100",
        },
        "spec": body,
    }


def server(name: str = "time", **spec: Any) -> MCPServer:
    return parse_mcpserver(raw_server(name, **spec))


def with_metadata(srv: MCPServer, **metadata: Any) -> MCPServer:
    raw = srv.model_dump(mode="json", by_alias=True, exclude_none=True)
    raw["metadata"].update(metadata)
    return parse_mcpserver(raw)


def tool_config(name: str = "tools", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPToolConfig",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": "tc-uid", "generation": 1},
        "spec": copy.deepcopy(spec),
    }


def config_map(name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": dict(data),
    }


def by_kind(children: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one child of `kind` (and `name`)."""
    found = [
        c for c in children if c["kind"] == kind and (name is None or c["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def live_copy(obj: dict[str, Any]) -> dict[str, Any]:
    """What the apiserver would return: our fields plus what it fills in."""
    live = copy.deepcopy(obj)
    meta = live["metadata"]
    meta.update(
        uid="child-uid",
        resourceVersion="42",
        creationTimestamp="2025-01-01T00:00:00Z",
        generation=1,
    )
    meta["annotations"]["deployment.kubernetes.io/revision"] = "1"
    live["status"] = {"observedGeneration": 1}
    if live["kind"] == "Deployment":
        live["spec"]["progressDeadlineSeconds"] = 600
        container = live["spec"]["template"]["spec"]["containers"][0]
        container["terminationMessagePath"] = "/dev/termination-log"
        container["readinessProbe"]["timeoutSeconds"] = 1
        container["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] = "v1"
    if live["kind"] == "Service":
        live["spec"]["clusterIP"] = "10.0.0.12"
        live["spec"]["ports"][0]["targetPort"] = "http"
    return live
