"""Generate the Helm charts' generated files under `deploy/charts` from their single sources.

`python -m moorage_api.chartgen` writes them; `--check` writes nothing and exits 1 when the
committed files differ. What is generated, and from what:

- `moorage-crds/templates/<plural>.moorage.dev.yaml`: the CRDs of `crdgen`, byte for byte the
  same spec, with Helm's labels and (`keep`) the `helm.sh/resource-policy: keep` annotation;
- `*/values.yaml` and `*/values.schema.json`: from the models of `chartvalues` (every value
  carries its docstring as a comment, so `helm show values` documents it);
- `*/Chart.yaml`: the release version of the `moorage` distribution as version and appVersion;
- `moorage-operator/files/dashboard.json`: a copy of the monitoring component's dashboard (a chart
  cannot read files outside its folder).

The operator chart's templates are written by hand; a test renders them with values equivalent to
each kustomize overlay and component and compares the objects with kustomize's.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import BaseModel

from moorage_api.chartvalues import CrdsChartValues, OperatorChartValues
from moorage_api.crdgen import KINDS, build_crd, to_yaml
from moorage_api.generating import REPO_ROOT, run_generator

DEFAULT_OUTPUT: Final = REPO_ROOT / "deploy" / "charts"
CRDS_CHART: Final = "moorage-crds"
OPERATOR_CHART: Final = "moorage-operator"
DASHBOARD: Final = REPO_ROOT / "deploy" / "components" / "monitoring" / "dashboard.json"
KUBE_VERSION: Final = ">=1.30.0-0"
_WIDTH: Final = 100
_YAML_HEADER: Final = (
    "# Generated from crds/src/moorage_api by `python -m moorage_api.chartgen`. Do not edit.\n"
)
_TEMPLATE_HEADER: Final = (
    "{{- /* Generated from crds/src/moorage_api by `python -m moorage_api.chartgen`."
    " Do not edit. */}}\n"
)
# What Helm adds to every object it installs; the comparison with kustomize ignores these labels.
_CRD_METADATA: Final = """\
  labels:
    app.kubernetes.io/managed-by: {{ .Release.Service }}
    app.kubernetes.io/instance: {{ .Release.Name }}
    app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
    helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
  {{- if .Values.keep }}
  annotations:
    helm.sh/resource-policy: keep
  {{- end }}
"""
_DESCRIPTIONS: Final = {
    CRDS_CHART: "Moorage's CustomResourceDefinitions (MCPServer, MCPToolConfig, MCPRegistry, "
    "MCPTenant). Install and upgrade it before moorage-operator.",
    OPERATOR_CHART: "Moorage, the Kubernetes operator that runs MCP servers: the operator, its "
    "admission webhook, RBAC, and optional monitoring and network policies.",
}


def release_version() -> str:
    """The `moorage` distribution's version: the charts' version and appVersion."""
    return metadata.version("moorage")


# -- values.schema.json ----------------------------------------------------------------------------


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    """`node` with every `$ref` replaced by its definition: Helm 3's validator (draft 7) and
    Helm 4's both read a self-contained schema the same way."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = definitions[node["$ref"].rsplit("/", 1)[-1]]
            merged = {**_inline(target, definitions)}
            merged.update({k: _inline(v, definitions) for k, v in node.items() if k != "$ref"})
            return merged
        return {
            k: _inline(v, definitions)
            for k, v in node.items()
            # Titles repeat the key in another spelling; they only add noise to error messages.
            if k not in ("title", "$defs")
        }
    if isinstance(node, list):
        return [_inline(v, definitions) for v in node]
    return node


def values_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of a chart's values: draft 7, camelCase keys, no references."""
    raw = model.model_json_schema(by_alias=True)
    schema = _inline(raw, raw.get("$defs", {}))
    return {"$schema": "http://json-schema.org/draft-07/schema#", **schema}


# -- values.yaml -----------------------------------------------------------------------------------


def _comment(text: str, *, indent: int) -> list[str]:
    prefix = " " * indent + "# "
    paragraph = " ".join(line.strip() for line in text.strip().splitlines())
    return textwrap.wrap(paragraph, width=_WIDTH, initial_indent=prefix, subsequent_indent=prefix)


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _field_order(model: type[BaseModel]) -> list[str]:
    """The class's own fields first, then the inherited ones: a component's identity (replicas,
    image) reads before its scheduling details."""
    own = [n for n in model.__annotations__ if n in model.model_fields]
    return own + [n for n in model.model_fields if n not in own]


def _values_lines(model: BaseModel, *, indent: int) -> list[str]:
    lines: list[str] = []
    fields = type(model).model_fields
    for name in _field_order(type(model)):
        field = fields[name]
        key = field.alias or name
        value = getattr(model, name)
        if lines and indent == 0:
            lines.append("")
        lines.extend(_comment(field.description or "", indent=indent))
        pad = " " * indent
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{key}:")
            lines.extend(_values_lines(value, indent=indent + 2))
        elif isinstance(value, dict | list) and value:
            block = yaml.safe_dump(value, default_flow_style=False, sort_keys=False, width=1000)
            lines.append(f"{pad}{key}:")
            lines.extend(f"{pad}  {line}" for line in block.splitlines())
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return lines


def values_yaml(model: BaseModel, *, title: str) -> str:
    """`values.yaml`: the defaults of `model`, each value under its docstring as a comment."""
    head = _comment(title, indent=0)
    return _YAML_HEADER + "\n".join([*head, "", *_values_lines(model, indent=0)]) + "\n"


# -- the charts -------------------------------------------------------------------------------------


def chart_yaml(name: str, *, version: str) -> str:
    chart = {
        "apiVersion": "v2",
        "name": name,
        "description": _DESCRIPTIONS[name],
        "type": "application",
        "version": version,
        "appVersion": version,
        "kubeVersion": KUBE_VERSION,
        "home": "https://github.com/moorage/moorage",
        "keywords": ["mcp", "operator", "moorage"],
    }
    return _YAML_HEADER + yaml.safe_dump(chart, sort_keys=False, width=_WIDTH)


def crd_template(document: dict[str, Any]) -> str:
    """One CRD as a template of the crds chart: crdgen's YAML with Helm's metadata added."""
    text = to_yaml(document)
    head = f"metadata:\n  name: {document['metadata']['name']}\n"
    # crdgen writes metadata as the name alone; anything more would need a real merge here.
    if head not in text or len(document["metadata"]) != 1:
        raise ValueError(f"unexpected CRD metadata: {document['metadata']}")
    return _TEMPLATE_HEADER + text.replace(head, head + _CRD_METADATA, 1)


def _schema_text(model: type[BaseModel]) -> str:
    return json.dumps(values_schema(model), indent=2, ensure_ascii=False) + "\n"


def render_charts(output: Path) -> dict[Path, str]:
    version = release_version()
    crds = output / CRDS_CHART
    operator = output / OPERATOR_CHART
    files: dict[Path, str] = {
        crds / "Chart.yaml": chart_yaml(CRDS_CHART, version=version),
        crds / "values.yaml": values_yaml(
            CrdsChartValues(), title=f"Values of the {CRDS_CHART} chart."
        ),
        crds / "values.schema.json": _schema_text(CrdsChartValues),
        operator / "Chart.yaml": chart_yaml(OPERATOR_CHART, version=version),
        operator / "values.yaml": values_yaml(
            OperatorChartValues(),
            title=f"Values of the {OPERATOR_CHART} chart. Install {CRDS_CHART} first; "
            "values-medium.yaml and values-large.yaml size it for larger fleets.",
        ),
        operator / "values.schema.json": _schema_text(OperatorChartValues),
        operator / "files" / "dashboard.json": DASHBOARD.read_text(encoding="utf-8"),
    }
    for definition in KINDS:
        path = crds / "templates" / definition.file_name
        files[path] = crd_template(build_crd(definition))
    return files


def stale_templates(output: Path, files: dict[Path, str]) -> list[Path]:
    """CRD templates of kinds that no longer exist."""
    folder = output / CRDS_CHART / "templates"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.yaml") if p not in files)


def main(argv: Sequence[str] | None = None) -> int:
    return run_generator(
        argv,
        prog="moorage_api.chartgen",
        description=__doc__.split("\n\n")[0] if __doc__ else "",
        default_output=DEFAULT_OUTPUT,
        render=render_charts,
        stale=stale_templates,
    )


if __name__ == "__main__":
    raise SystemExit(main())
