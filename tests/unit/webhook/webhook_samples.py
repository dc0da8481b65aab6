"""Sample objects and AdmissionReviews for the webhook's unit tests."""

from __future__ import annotations

import copy
import json
from typing import Any

POLICY = 'permit(principal, action == Action::"call_tool", resource == Tool::"time");'


def mcpserver(spec: dict[str, Any] | None = None, *, name: str = "time") -> dict[str, Any]:
    """A valid MCPServer (as the apiserver sends it, defaults filled) with `spec` merged in."""
    body: dict[str, Any] = {
        "image": "ghcr.io/moorage/time:1.2.0",
        "transport": "stdio",
        "proxyMode": "streamable-http",
        "port": 8080,
        "targetPort": 8080,
        "permissionProfile": {"type": "builtin", "name": "network"},
        "audit": {"enabled": False},
        "sessionAffinity": "ClientIP",
        "trustProxyHeaders": False,
    }
    body.update(copy.deepcopy(spec or {}))
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPServer",
        "metadata": {"name": name, "namespace": "team-a", "uid": "7d0a"},
        "spec": body,
    }


def mcptoolconfig(spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPToolConfig",
        "metadata": {"name": "tools", "namespace": "team-a"},
        "spec": copy.deepcopy(spec or {}),
    }


def mcpregistry(source: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPRegistry",
        "metadata": {"name": "catalog", "namespace": "team-a"},
        "spec": {"source": copy.deepcopy(source), **copy.deepcopy(spec)},
    }


def mcpremoteproxy(spec: dict[str, Any] | None = None, *, name: str = "docs") -> dict[str, Any]:
    """A valid MCPRemoteProxy (defaults filled, as the apiserver sends it) with `spec` merged in."""
    body: dict[str, Any] = {
        "remoteUrl": "https://mcp.example.com/mcp",
        "allowPrivateEndpoint": False,
        "transport": "streamable-http",
        "port": 8080,
        "audit": {"enabled": False},
        "replicas": 1,
        "sessionAffinity": "ClientIP",
        "trustProxyHeaders": False,
    }
    body.update(copy.deepcopy(spec or {}))
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPRemoteProxy",
        "metadata": {"name": name, "namespace": "team-a", "uid": "5b1c"},
        "spec": body,
    }


def mcpexternalauthconfig(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPExternalAuthConfig",
        "metadata": {"name": "upstream", "namespace": "team-a"},
        "spec": copy.deepcopy(spec),
    }


def mcpgroup(spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPGroup",
        "metadata": {"name": "team", "namespace": "team-a"},
        "spec": copy.deepcopy(spec or {}),
    }


def virtualmcpserver(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "VirtualMCPServer",
        "metadata": {"name": "team", "namespace": "team-a"},
        "spec": {"groupRef": {"name": "tools"}, **copy.deepcopy(spec)},
    }


def review(
    obj: dict[str, Any] | None,
    *,
    uid: str = "0f1e2d3c",
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
    kind: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """An admission.k8s.io/v1 AdmissionReview for `obj`."""
    the_kind = kind or (obj or old or {}).get("kind", "MCPServer")
    plural = {
        "MCPServer": "mcpservers",
        "MCPToolConfig": "mcptoolconfigs",
        "MCPRemoteProxy": "mcpremoteproxies",
        "MCPExternalAuthConfig": "mcpexternalauthconfigs",
        "MCPGroup": "mcpgroups",
    }.get(the_kind, "mcpregistries")
    meta = (obj or old or {}).get("metadata", {})
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "moorage.dev", "version": "v1alpha1", "kind": the_kind},
            "resource": {"group": "moorage.dev", "version": "v1alpha1", "resource": plural},
            "requestKind": {"group": "moorage.dev", "version": "v1alpha1", "kind": the_kind},
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace", ""),
            "operation": operation,
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": obj,
            "oldObject": old,
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def review_bytes(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()
