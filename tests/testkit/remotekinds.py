"""Minimal bodies of MCPRemoteProxy, MCPExternalAuthConfig and MCPGroup for tests: the required
fields and what the caller adds to the spec, as a user would write them (no defaults filled)."""

from __future__ import annotations

from typing import Any

API_VERSION = "moorage.dev/v1alpha1"
REMOTE_URL = "https://mcp.example.com/mcp"


def _body(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}


def remoteproxy(name: str = "docs", **spec: Any) -> dict[str, Any]:
    return _body("MCPRemoteProxy", name, {"remoteUrl": REMOTE_URL, **spec})


def authconfig(name: str = "upstream", **spec: Any) -> dict[str, Any]:
    return _body("MCPExternalAuthConfig", name, spec)


def group(name: str = "team", **spec: Any) -> dict[str, Any]:
    return _body("MCPGroup", name, spec)


def virtualmcpserver(name: str = "hub", **spec: Any) -> dict[str, Any]:
    return _body("VirtualMCPServer", name, spec)
