"""Generated files match the models, and the CRD schemas are structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, Field

from moorage_api import docgen
from moorage_api.crdgen import KINDS, build_crd, main, render_manifests
from moorage_api.runconfig import RunConfig
from moorage_api.sessionstorage import replicas_need_redis_rule
from moorage_api.structural import SchemaError, resource_schema, structural_schema, walk

REPO = Path(__file__).resolve().parents[3]
MANIFESTS = REPO / "crds" / "manifests"
REFERENCE = REPO / "docs" / "reference.md"
SCHEMAS = [
    pytest.param(resource_schema(definition.model), id=definition.kind) for definition in KINDS
] + [pytest.param(structural_schema(RunConfig), id="RunConfig")]


def test_committed_crds_equal_the_generated_ones(tmp_path: Path) -> None:
    generated = render_manifests(tmp_path)
    committed = {path.name for path in MANIFESTS.glob("*.yaml")}
    assert committed == {path.name for path in generated}, "run python -m moorage_api.crdgen"
    for path, text in generated.items():
        assert (MANIFESTS / path.name).read_text() == text, (
            f"{path.name} is stale: run python -m moorage_api.crdgen"
        )


def test_committed_reference_equals_the_generated_one() -> None:
    assert REFERENCE.read_text() == docgen.render_reference(), (
        "docs/reference.md is stale: run python -m moorage_api.docgen"
    )


def test_check_passes_on_fresh_output_and_fails_on_drift(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--check", "--output", str(tmp_path)]) == 1
    assert "missing" in capsys.readouterr().out
    assert main(["--output", str(tmp_path)]) == 0
    assert main(["--check", "--output", str(tmp_path)]) == 0
    capsys.readouterr()
    crd = tmp_path / "mcpservers.moorage.dev.yaml"
    crd.write_text(crd.read_text().replace("maximum: 65535", "maximum: 65536"))
    assert main(["--check", "--output", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "maximum: 65536\n" in out
    changed = [line[0] + line[1:].strip() for line in out.splitlines() if "maximum: 6553" in line]
    assert changed == [
        "-maximum: 65536",
        "+maximum: 65535",
        "-maximum: 65536",
        "+maximum: 65535",
    ]
    assert "out of date" in out


def test_generation_removes_files_it_no_longer_produces(tmp_path: Path) -> None:
    stale = tmp_path / "mcpold.moorage.dev.yaml"
    stale.write_text("kind: CustomResourceDefinition\n")
    assert main(["--output", str(tmp_path)]) == 0
    assert not stale.exists()


def test_docgen_check_detects_drift(tmp_path: Path) -> None:
    reference = tmp_path / "reference.md"
    assert docgen.main(["--output", str(reference)]) == 0
    assert docgen.main(["--check", "--output", str(reference)]) == 0
    reference.write_text(reference.read_text().replace("`spec.port`", "`spec.porrt`"))
    assert docgen.main(["--check", "--output", str(reference)]) == 1


def test_the_kustomization_lists_every_crd() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert kustomization["resources"] == sorted(
        f"{definition.plural}.moorage.dev.yaml" for definition in KINDS
    )


@pytest.mark.parametrize(
    ("kind", "short_names", "columns"),
    [
        ("MCPServer", ["mcps", "mcpserver"], ["Phase", "Ready", "Replicas", "URL", "Age"]),
        ("MCPToolConfig", ["mcptc"], ["Valid", "Blocked", "Age"]),
        ("MCPRegistry", ["mcpreg"], ["Phase", "Servers", "Last Sync", "Age"]),
        ("MCPRemoteProxy", ["mcprp", "rp"], ["Phase", "Remote URL", "URL", "Ready", "Age"]),
        ("MCPExternalAuthConfig", ["mcpeac"], ["Type", "Valid", "Age"]),
        ("MCPGroup", ["mcpg"], ["Members", "Phase", "Age"]),
        ("VirtualMCPServer", ["vmcp"], ["Phase", "URL", "Backends", "Ready", "Age"]),
    ],
)
def test_crd_names_and_default_columns(
    kind: str, short_names: list[str], columns: list[str]
) -> None:
    definition = next(d for d in KINDS if d.kind == kind)
    crd = build_crd(definition)
    names = crd["spec"]["names"]
    assert names["shortNames"] == short_names
    assert names["categories"] == ["moorage"]
    assert crd["spec"]["scope"] == "Namespaced"
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    shown = [c["name"] for c in version["additionalPrinterColumns"] if "priority" not in c]
    assert shown == columns


def test_the_mcpserver_ready_column_reads_the_ready_condition() -> None:
    crd = build_crd(next(d for d in KINDS if d.kind == "MCPServer"))
    columns = {c["name"]: c for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Replicas"] == {
        "name": "Replicas",
        "type": "integer",
        "jsonPath": ".status.readyReplicas",
        "description": "Ready proxy replicas.",
    }


@pytest.mark.parametrize("schema", SCHEMAS)
def test_every_node_is_typed_and_has_no_null_branches(schema: dict[str, Any]) -> None:
    for path, node in walk(schema):
        assert "$ref" not in node, path
        assert "oneOf" not in node, path
        assert "allOf" not in node, path
        assert "nullable" not in node, path
        assert "title" not in node, path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string") is True, path
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
        else:
            assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        assert not ("properties" in node and "additionalProperties" in node), path
        assert node.get("default", 0) is not None, path


@pytest.mark.parametrize("schema", SCHEMAS[:3])
def test_only_pod_template_spec_preserves_unknown_fields(schema: dict[str, Any]) -> None:
    preserving = [p for p, n in walk(schema) if n.get("x-kubernetes-preserve-unknown-fields")]
    if schema["description"].startswith("An MCP server"):
        assert preserving == ["spec.podTemplateSpec"]
    else:
        assert preserving == []


@pytest.mark.parametrize("schema", SCHEMAS[:3])
def test_every_field_has_a_description(schema: dict[str, Any]) -> None:
    for path, node in walk(schema):
        if path and not path.endswith(("[]", ".*")) and path != "metadata":
            assert node.get("description"), path


@pytest.mark.parametrize("schema", SCHEMAS[:3])
def test_map_list_keys_are_required(schema: dict[str, Any]) -> None:
    found = 0
    for path, node in walk(schema):
        if node.get("x-kubernetes-list-type") == "map":
            found += 1
            for key in node["x-kubernetes-list-map-keys"]:
                assert key in node["items"].get("required", []), path
    assert found >= 1


def test_keyed_lists_are_the_documented_ones() -> None:
    schema = resource_schema(next(d for d in KINDS if d.kind == "MCPServer").model)
    keyed = {
        p: node.get("x-kubernetes-list-map-keys")
        for p, node in walk(schema)
        if node.get("x-kubernetes-list-type")
    }
    assert keyed == {
        "spec.allowedHosts": None,
        "spec.env": ["name"],
        "spec.resourceOverrides.proxyDeployment.env": ["name"],
        "spec.rateLimits.perTool": ["tool"],
        "spec.sessionStorage.redis.sentinel.addresses": None,
        "status.conditions": ["type"],
    }


def test_cel_rules_are_where_the_spec_wants_them() -> None:
    rules: dict[str, list[str]] = {}
    for definition in KINDS:
        for path, node in walk(resource_schema(definition.model), path=definition.kind):
            for rule in node.get("x-kubernetes-validations", []):
                rules.setdefault(path, []).append(rule["rule"])
    assert set(rules) == {
        "MCPServer",
        "MCPServer.spec",
        "MCPServer.spec.permissionProfile",
        "MCPServer.spec.oidcConfig",
        "MCPServer.spec.authzConfig",
        "MCPServer.spec.allowedHosts",
        "MCPServer.spec.sessionStorage",
        "MCPServer.spec.sessionStorage.redis.tls",
        "MCPServer.spec.rateLimits",
        "MCPToolConfig.spec.toolsOverride.*",
        "MCPRegistry",
        "MCPRegistry.spec.source",
        "MCPRegistry.spec.source.git",
        "MCPRegistry.spec.syncPolicy",
        "MCPRemoteProxy",
        "MCPRemoteProxy.spec.oidcConfig",
        "MCPRemoteProxy.spec.authzConfig",
        "MCPRemoteProxy.spec.headerForward",
        "MCPRemoteProxy.spec.headerForward.addHeaders[]",
        "MCPRemoteProxy.spec.headerForward.addHeadersFromSecret[]",
        "MCPRemoteProxy.spec",
        "MCPRemoteProxy.spec.sessionStorage",
        "MCPRemoteProxy.spec.sessionStorage.redis.tls",
        "MCPRemoteProxy.spec.rateLimits",
        "MCPExternalAuthConfig.spec",
        "MCPExternalAuthConfig.spec.headerInjection",
        "VirtualMCPServer",
        "VirtualMCPServer.spec.incomingAuth.oidcConfig",
        "VirtualMCPServer.spec.incomingAuth.authzConfig",
        "VirtualMCPServer.spec.outgoingAuth.backends",
        "VirtualMCPServer.spec.toolConfigs",
        "VirtualMCPServer.spec.conflictResolution",
        "VirtualMCPServer.spec",
        "VirtualMCPServer.spec.sessionStorage",
        "VirtualMCPServer.spec.sessionStorage.redis.tls",
        "VirtualMCPServer.spec.rateLimits",
    }
    assert "duration(self.interval) >= duration('1m')" in rules["MCPRegistry.spec.syncPolicy"]
    replicas_rule = replicas_need_redis_rule()["rule"]
    for kind in ("MCPServer", "MCPRemoteProxy", "VirtualMCPServer"):
        assert replicas_rule in rules[f"{kind}.spec"], kind


def test_defaults_in_the_schema_are_valid_for_the_models() -> None:
    schema = resource_schema(next(d for d in KINDS if d.kind == "MCPServer").model)
    spec = schema["properties"]["spec"]["properties"]
    assert spec["permissionProfile"]["default"] == {"type": "builtin", "name": "network"}
    assert spec["audit"]["default"] == {"enabled": False}
    assert spec["port"]["default"] == 8080
    assert "default" not in spec["args"]


class _Union(BaseModel):
    value: int | str = Field(..., description="Either.")


class _Open(BaseModel):
    value: dict[str, object] = Field(..., description="Anything.")


@pytest.mark.parametrize(
    ("model", "expected"),
    [(_Union, "anyOf with several non-null branches"), (_Open, "additionalProperties")],
)
def test_schemas_that_cannot_be_structural_are_refused(
    model: type[BaseModel], expected: str
) -> None:
    with pytest.raises(SchemaError, match=expected):
        structural_schema(model)
