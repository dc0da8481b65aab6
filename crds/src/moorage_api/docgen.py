"""Generate `docs/reference.md`, the field-by-field reference of our kinds and the RunConfig.

`python -m moorage_api.docgen` writes it; `--check` writes nothing and exits 1 when the committed
file differs. The reference is rendered from the same structural schemas as the CRDs (and the
printer columns and short names of `crdgen`), so the two cannot disagree.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from moorage_api.constants import (
    CATEGORY,
    COMPONENT_MCP_SERVER,
    COMPONENT_PROXY_RUNNER,
    GROUP,
    LABEL_APP,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_MCPREMOTEPROXY,
    LABEL_MCPSERVER,
    LABEL_NAME,
    LABEL_PART_OF,
    LABEL_VIRTUALMCPSERVER,
    MANAGED_BY,
    MCP_SERVICE_AFFINITY_TIMEOUT,
    NAME_MCPREMOTEPROXY,
    NAME_MCPSERVER,
    NAME_VIRTUALMCPSERVER,
    PART_OF,
    VERSION,
)
from moorage_api.crdgen import KINDS, KindDefinition
from moorage_api.generating import REPO_ROOT, run_generator
from moorage_api.naming import (
    headless_service_name,
    mcp_pod_selector,
    mcp_service_name,
    proxy_service_name,
    remote_proxy_name,
    remote_proxy_service_name,
    remote_runconfig_configmap_name,
    vmcp_name,
    vmcp_runconfig_configmap_name,
    vmcp_service_name,
)
from moorage_api.runconfig import SCHEMA_VERSION, RunConfig
from moorage_api.structural import JsonSchema, resource_schema, structural_schema

DEFAULT_OUTPUT: Final = REPO_ROOT / "docs" / "reference.md"
_FIELDS_HEADER: Final = (
    "| field | type | default | constraints | description |\n|---|---|---|---|---|\n"
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return f"`{_cell(text)}`"


def describe_type(node: JsonSchema) -> str:
    """A short human type: `string`, `array of object`, `map of string`, `int or string`."""
    if node.get("x-kubernetes-int-or-string"):
        return "int or string"
    kind = node.get("type", "any")
    if kind == "array":
        return f"array of {describe_type(node.get('items', {}))}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map of {describe_type(node['additionalProperties'])}"
    return str(kind)


def describe_constraints(node: JsonSchema, *, required: bool) -> str:
    parts: list[str] = ["required"] if required else []
    if "enum" in node:
        parts.append("one of " + ", ".join(_code(value) for value in node["enum"]))
    for key, label in (
        ("minimum", "≥"),
        ("maximum", "≤"),
        ("minLength", "length ≥"),
        ("maxLength", "length ≤"),
        ("minItems", "items ≥"),
        ("maxItems", "items ≤"),
    ):
        if key in node:
            parts.append(f"{label} {node[key]}")
    if "pattern" in node:
        parts.append(f"pattern {_code(node['pattern'])}")
    if "format" in node:
        parts.append(f"format {node['format']}")
    list_type = node.get("x-kubernetes-list-type")
    if list_type == "map":
        keys = ", ".join(_code(key) for key in node.get("x-kubernetes-list-map-keys", []))
        parts.append(f"unique by {keys}")
    elif list_type == "set":
        parts.append("unique values")
    if node.get("x-kubernetes-preserve-unknown-fields"):
        parts.append("free-form")
    items = node.get("items")
    if isinstance(items, dict) and not _has_fields(items):
        each = describe_constraints(items, required=False)
        if each:
            parts.append(f"each: {each}")
    return "; ".join(parts)


def field_rows(node: JsonSchema, *, path: str, required: bool = False) -> list[str]:
    """One table row per field below `node` (itself included when `path` is set)."""
    rows: list[str] = []
    if path:
        default = (
            _code(json.dumps(node["default"], ensure_ascii=False)) if "default" in node else ""
        )
        rows.append(
            f"| `{_cell(path)}` | {describe_type(node)} | {default} | "
            f"{describe_constraints(node, required=required)} | "
            f"{_cell(node.get('description', ''))} |\n"
        )
    needed = set(node.get("required", []))
    for name, child in node.get("properties", {}).items():
        child_path = f"{path}.{name}" if path else name
        rows += field_rows(child, path=child_path, required=name in needed)
    if "items" in node:
        rows += field_rows(node["items"], path=f"{path}[]") if _has_fields(node["items"]) else []
    values = node.get("additionalProperties")
    if isinstance(values, dict) and _has_fields(values):
        rows += field_rows(values, path=f"{path}.<key>")
    return rows


def _has_fields(node: JsonSchema) -> bool:
    return bool(node.get("properties"))


def rule_rows(node: JsonSchema, *, path: str) -> list[str]:
    """One table row per CEL rule below `node`."""
    rows = [
        f"| `{_cell(path or '(object)')}` | {_code(rule['rule'])} | {_cell(rule['message'])} |\n"
        for rule in node.get("x-kubernetes-validations", [])
    ]
    for name, child in node.get("properties", {}).items():
        rows += rule_rows(child, path=f"{path}.{name}" if path else name)
    if "items" in node:
        rows += rule_rows(node["items"], path=f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        rows += rule_rows(node["additionalProperties"], path=f"{path}.<key>")
    return rows


def render_kind(definition: KindDefinition) -> str:
    schema = resource_schema(definition.model)
    short = ", ".join(_code(name) for name in definition.short_names)
    text = f"## {definition.kind}\n\n{schema['description']}\n\n"
    text += (
        f"`apiVersion: {GROUP}/{VERSION}`, `kind: {definition.kind}`; plural "
        f"`{definition.plural}`, short names {short}, category `{CATEGORY}`; "
        + ("namespaced" if definition.namespaced else "cluster-scoped")
        + ("; status is a subresource.\n\n" if definition.has_status else "; no status.\n\n")
    )
    text += "| column | JSONPath | shown |\n|---|---|---|\n"
    for column in definition.columns:
        shown = "with `-o wide`" if column.priority else "always"
        text += f"| {column.name} | {_code(column.json_path)} | {shown} |\n"
    text += f"\n### {definition.kind} fields\n\n" + _FIELDS_HEADER
    for part in ("spec", "status"):
        if part not in schema["properties"]:
            continue
        node = schema["properties"][part]
        text += "".join(field_rows(node, path=part, required=part in schema["required"]))
    rules = rule_rows(schema, path="")
    if rules:
        text += f"\n### {definition.kind} rules\n\nEnforced by the apiserver (CEL).\n\n"
        text += "| on | rule | message |\n|---|---|---|\n" + "".join(rules)
    return text + "\n"


def render_runconfig() -> str:
    schema = structural_schema(RunConfig)
    text = (
        "## RunConfig (`runconfig.json`)\n\n"
        f"{schema['description']} Rendered by the operator into ConfigMap `<name>-runconfig` "
        "(`<name>-remote-runconfig` for an MCPRemoteProxy, with `remote` set and no workload; "
        "key `runconfig.json`), read by the proxy runner. JSON with keys sorted, "
        f'`schema_version: "{SCHEMA_VERSION}"`; every key is present (unset values are '
        "`null`).\n\n"
    )
    return text + _FIELDS_HEADER + "".join(field_rows(schema, path="")) + "\n"


_SERVER: Final = "<name>"

STABLE_LABELS: Final = (
    (LABEL_APP, NAME_MCPSERVER, "the incumbent operator's label; kept for its users' selectors"),
    (LABEL_NAME, NAME_MCPSERVER, "every MCPServer's objects"),
    (LABEL_INSTANCE, _SERVER, "one MCPServer's objects"),
    (LABEL_MCPSERVER, _SERVER, "one MCPServer's objects (Moorage's own key)"),
    (LABEL_MANAGED_BY, MANAGED_BY, "everything Moorage creates"),
    (LABEL_PART_OF, PART_OF, "everything Moorage creates"),
    (
        LABEL_COMPONENT,
        f"`{COMPONENT_PROXY_RUNNER}` or `{COMPONENT_MCP_SERVER}`",
        "the proxy runner's pods, or the MCP server's pods",
    ),
)
"""(key, value, what it marks) of the labels on an MCPServer's children and pods."""


def render_labels() -> str:
    """The labels and Services users may select on: a stable part of the API."""
    rows = "".join(
        f"| `{key}` | {value if value.startswith('`') else _code(value)} | {meaning} |\n"
        for key, value, meaning in STABLE_LABELS
    )
    selector = ", ".join(f"`{k}: {v}`" for k, v in mcp_pod_selector(_SERVER).items())
    return (
        "## Labels and Services\n\n"
        "Stable API: Services, NetworkPolicies and monitoring may select on these labels, and "
        "they will not be removed or change meaning within this API version; other labels may "
        "change. All but the last are on every object Moorage creates for an MCPServer "
        "`<name>` and on its pods (the proxy runner's and the MCP server's); the last is on "
        "the pods and on what the proxy runner creates.\n\n"
        "| label | value | marks |\n|---|---|---|\n"
        f"{rows}\n"
        f"To select only the MCP server's pods, add `{LABEL_COMPONENT}: {COMPONENT_MCP_SERVER}` "
        f"(the StatefulSet's selector is {selector}; selectors never gain labels, since "
        "Kubernetes does not let a StatefulSet's or Deployment's selector change).\n\n"
        "| Service | type | selects | for |\n|---|---|---|---|\n"
        f"| `{proxy_service_name(_SERVER)}` | ClusterIP, `sessionAffinity` as the spec says | "
        "the proxy runner's pods | MCP clients (`status.url`) |\n"
        f"| `{mcp_service_name(_SERVER)}` | ClusterIP, `ClientIP` affinity "
        f"({MCP_SERVICE_AFFINITY_TIMEOUT} s) | "
        "the MCP server's pods | HTTP transports only: clients that bypass the proxy, as "
        "with the incumbent operator |\n"
        f"| `{headless_service_name(_SERVER)}` | headless | the MCP server's pods | HTTP "
        "transports only: one DNS name per pod, which the proxy runner uses |\n\n"
        "An MCPRemoteProxy `<name>` has no MCP server pods: its children (ServiceAccount, "
        f"Role, RoleBinding and Deployment `{remote_proxy_name(_SERVER)}`, ConfigMap "
        f"`{remote_runconfig_configmap_name(_SERVER)}`) and its proxy pods carry the labels "
        f"above with `{NAME_MCPREMOTEPROXY}` in place of `{NAME_MCPSERVER}` and "
        f"`{LABEL_MCPREMOTEPROXY}` in place of `{LABEL_MCPSERVER}`; clients reach it through "
        f"the ClusterIP Service `{remote_proxy_service_name(_SERVER)}`.\n\n"
        "A VirtualMCPServer `<name>` likewise: ServiceAccount, Role, RoleBinding and Deployment "
        f"`{vmcp_name(_SERVER)}`, ConfigMap `{vmcp_runconfig_configmap_name(_SERVER)}`, with "
        f"`{NAME_VIRTUALMCPSERVER}` and `{LABEL_VIRTUALMCPSERVER}` in the labels; clients reach "
        f"the aggregator through the ClusterIP Service `{vmcp_service_name(_SERVER)}`.\n\n"
        f"`{mcp_service_name(_SERVER)}` is the one name another MCPServer's object may hold "
        f"(the proxy Service of a server `a` is `{proxy_service_name('a')}`, the "
        f"`{mcp_service_name('<name>')}` of a server `a-proxy`); the proxy runner then leaves "
        "that Service alone and logs `workload_name_taken`.\n\n"
    )


def render_reference() -> str:
    """The whole of `docs/reference.md`."""
    text = (
        "<!-- Generated from crds/src/moorage_api by `python -m moorage_api.docgen`. "
        "Do not edit. -->\n\n"
        "# API reference\n\n"
        f"API group `{GROUP}`, version `{VERSION}`. Field names are as written in YAML; "
        "`a[]` is an element of list `a`, `a.<key>` a value of map `a`. Unknown fields are "
        "rejected everywhere except inside `spec.podTemplateSpec`.\n\n"
    )
    for definition in KINDS:
        text += render_kind(definition)
    return text + render_labels() + render_runconfig()


def main(argv: Sequence[str] | None = None) -> int:
    return run_generator(
        argv,
        prog="moorage_api.docgen",
        description="Generate docs/reference.md from the moorage_api models.",
        default_output=DEFAULT_OUTPUT,
        render=lambda output: {Path(output): render_reference()},
    )


if __name__ == "__main__":
    raise SystemExit(main())
