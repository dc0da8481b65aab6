"""The charts' generated files: committed equal to generated, the values schema self-contained
and as strict as the models, values.yaml a commented rendering of the defaults."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from moorage_api import chartgen
from moorage_api.chartvalues import CrdsChartValues, OperatorChartValues
from moorage_api.crdgen import KINDS

REPO = Path(__file__).resolve().parents[3]
CHARTS = REPO / "deploy" / "charts"


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _objects(node: dict[str, Any]) -> list[dict[str, Any]]:
    """Every schema node describing an object with declared properties."""
    if "properties" not in node:
        return []
    return [node, *(o for v in node["properties"].values() for o in _objects(v))]


def test_committed_chart_files_equal_the_generated_ones() -> None:
    for path, text in chartgen.render_charts(CHARTS).items():
        assert path.read_text() == text, f"{path} is stale: run python -m moorage_api.chartgen"


def test_check_fails_on_drift_and_on_a_template_of_a_kind_that_is_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert chartgen.main(["--check", "--output", str(tmp_path)]) == 1
    assert chartgen.main(["--output", str(tmp_path)]) == 0
    assert chartgen.main(["--check", "--output", str(tmp_path)]) == 0
    values = tmp_path / "moorage-operator" / "values.yaml"
    values.write_text(values.read_text().replace("replicaCount: 1", "replicaCount: 3"))
    assert chartgen.main(["--check", "--output", str(tmp_path)]) == 1
    assert "+  replicaCount: 1" in capsys.readouterr().out
    assert chartgen.main(["--output", str(tmp_path)]) == 0
    gone = tmp_path / "moorage-crds" / "templates" / "mcpgone.moorage.dev.yaml"
    gone.write_text("kind: CustomResourceDefinition\n")
    assert chartgen.main(["--check", "--output", str(tmp_path)]) == 1
    assert "not generated any more" in capsys.readouterr().out
    assert chartgen.main(["--output", str(tmp_path)]) == 0
    assert not gone.exists()


@pytest.mark.parametrize("model", [OperatorChartValues, CrdsChartValues], ids=lambda m: m.__name__)
def test_the_values_schema_is_self_contained_and_refuses_unknown_keys(model: Any) -> None:
    schema = chartgen.values_schema(model)
    assert _refs(schema) == []
    assert "$defs" not in json.dumps(schema)

    for node in _objects(schema):
        assert node["additionalProperties"] is False, sorted(node["properties"])


def test_the_rbac_schema_asks_namespace_scope_for_namespaces() -> None:
    rbac = chartgen.values_schema(OperatorChartValues)["properties"]["operator"]["properties"][
        "rbac"
    ]
    assert rbac["properties"]["scope"]["enum"] == ["cluster", "namespace"]
    assert rbac["if"] == {"properties": {"scope": {"const": "namespace"}}, "required": ["scope"]}
    assert rbac["then"] == {"properties": {"allowedNamespaces": {"minItems": 1}}}


def test_values_yaml_is_the_defaults_with_a_comment_above_each_value() -> None:
    text = chartgen.values_yaml(CrdsChartValues(), title="Title.")
    assert yaml.safe_load(text) == {"keep": True}
    lines = text.splitlines()
    keep = lines.index("keep: true")
    assert lines[keep - 2].startswith("# Annotate the CRDs")
    assert lines[keep - 1].startswith("# ")
    operator = chartgen.values_yaml(OperatorChartValues(), title="Title.")
    assert yaml.safe_load(operator) == OperatorChartValues().model_dump(by_alias=True)
    assert all(len(line) <= 100 for line in operator.splitlines())


def test_crd_templates_add_helm_metadata_to_the_crds_of_crdgen() -> None:
    files = chartgen.render_charts(Path("/charts"))
    for definition in KINDS:
        text = files[Path("/charts/moorage-crds/templates") / definition.file_name]
        assert "{{- if .Values.keep }}" in text
        assert "helm.sh/resource-policy: keep" in text
        assert f"  name: {definition.crd_name}\n  labels:\n" in text


def test_a_crd_with_more_metadata_than_a_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unexpected CRD metadata"):
        chartgen.crd_template({"metadata": {"name": "x", "labels": {"a": "b"}}})
