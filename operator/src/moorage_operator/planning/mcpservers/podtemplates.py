"""The operator's check of `spec.podTemplateSpec`, reported as the `PodTemplateValid` condition.

The admission webhook validates the template in full before it is stored. The operator still
checks the shape it relies on before rendering a RunConfig, because objects can reach it without
the webhook (installed later, `failurePolicy` changed, stored before an upgrade): a template the
proxy runner could not merge would otherwise fail later, in the proxy runner's logs, instead of in
the MCPServer's status.

Pure: no I/O. The check is structural (known pod spec fields, objects and lists where
`moorage_api.podfields` puts them, named containers and volumes, string maps for labels and
annotations) and names the first field at fault. A null field is not set, as in Kubernetes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from moorage_api import podfields
from moorage_api.mcpserver import MCPServerConditionType
from moorage_operator.planning.problems import Problem

_TOP_LEVEL: Final = frozenset({"metadata", "spec"})
_SPEC_TYPES: Final = podfields.json_types(podfields.POD_SPEC)
_NAMED_LISTS: Final = tuple(
    name
    for name, kind in podfields.POD_SPEC.fields.items()
    if isinstance(kind, podfields.ListOf)
    and isinstance(kind.item, podfields.Struct)
    and kind.merge_key == "name"
    and "name" in kind.item.required
)
"""Lists whose elements are merged by a name they must have (containers, volumes, ...)."""


def _string_map_problem(value: Any, *, path: str) -> str | None:
    if not isinstance(value, Mapping):
        return f"{path}: must be an object of strings"
    for key, item in value.items():
        if not isinstance(item, str):
            return f"{path}.{key}: must be a string"
    return None


def _metadata_problem(metadata: Any, *, path: str) -> str | None:
    if not isinstance(metadata, Mapping):
        return f"{path}: must be an object"
    for field, value in metadata.items():
        if value is None:
            continue
        if field not in podfields.TEMPLATE_METADATA_FIELDS:
            return f"{path}.{field}: only labels and annotations may be set"
        problem = _string_map_problem(value, path=f"{path}.{field}")
        if problem:
            return problem
    return None


def _named_list_problem(items: Any, *, path: str) -> str | None:
    if not isinstance(items, list):
        return f"{path}: must be a list"
    seen: set[str] = set()
    for index, item in enumerate(items):
        where = f"{path}[{index}]"
        if not isinstance(item, Mapping):
            return f"{where}: must be an object"
        name = item.get("name")
        if not isinstance(name, str) or not name:
            return f"{where}.name: required"
        if name in seen:
            return f"{where}.name: duplicate name {name!r}"
        seen.add(name)
    return None


def _spec_problem(spec: Any, *, path: str) -> str | None:
    if not isinstance(spec, Mapping):
        return f"{path}: must be an object"
    for field in _NAMED_LISTS:
        if spec.get(field) is not None:
            problem = _named_list_problem(spec[field], path=f"{path}.{field}")
            if problem:
                return problem
    for field, value in spec.items():
        expected = _SPEC_TYPES.get(field)
        if expected is None:
            return f"{path}.{field}: unknown field"
        if value is None:
            continue
        if (expected == "object" or expected.startswith("map of")) and not isinstance(
            value, Mapping
        ):
            return f"{path}.{field}: must be an object"
        if expected.startswith("list of") and not isinstance(value, list):
            return f"{path}.{field}: must be a list"
    return None


def pod_template_problem(template: Any, *, path: str = "spec.podTemplateSpec") -> str | None:
    """None when `template` has the shape of a PodTemplateSpec, else the first problem."""
    if template is None:
        return None
    if not isinstance(template, Mapping):
        return f"{path}: must be an object (a PodTemplateSpec)"
    for key in template:
        if key not in _TOP_LEVEL:
            return f"{path}.{key}: unknown field (expected metadata and spec)"
    if "metadata" in template:
        problem = _metadata_problem(template["metadata"], path=f"{path}.metadata")
        if problem:
            return problem
    if "spec" in template:
        return _spec_problem(template["spec"], path=f"{path}.spec")
    return None


def pod_template_problems(template: Any) -> list[Problem]:
    """`PodTemplateValid`'s problem with `template`, if any (for MCPServers and
    MCPRemoteProxies alike)."""
    problem = pod_template_problem(template)
    if problem is None:
        return []
    return [
        Problem(
            MCPServerConditionType.POD_TEMPLATE_VALID,
            "PodTemplateInvalid",
            f"Invalid pod template: {problem}",
        )
    ]
