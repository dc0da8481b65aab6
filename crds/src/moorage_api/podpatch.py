"""Pod template customisation: validating a pod template patch and merging it into a template.

Two inputs customise the MCP server's pod: the MCPServer's `podTemplateSpec` (carried in the
RunConfig as `pod_template_spec`) and the `--k8s-pod-patch` flag of `moorage-proxyrunner run`.
Both are a `PodTemplateSpec` (`{"metadata": {...}, "spec": {...}}`), merged into the base template
the way `kubectl patch --type strategic` would: maps merge recursively, `null` removes a key, the
lists Kubernetes declares with a merge key (containers by `name`, env by `name`, ports by
`containerPort`, ...) merge element by element, every other list is replaced. Moorage's required
settings for container `mcp` are merged last, on top of both.

Pure: no I/O. Validation is structural (shapes, types and known field names, with the path of the
first error) so that a typo fails before anything is applied; the apiserver still validates
values.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from moorage_api import podfields
from moorage_api.jsonkinds import describe_json_type

JsonObject = dict[str, Any]


class PodPatchError(ValueError):
    """A pod template (or patch) is unusable; the message names the field and what is expected."""


# -- merge rules --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListMerge:
    """How a list field merges: element by element, matched on `key`."""

    key: str
    """The field that identifies an element (Kubernetes' `patchMergeKey`)."""
    element: Mapping[str, ListMerge | Mapping[str, Any]] = field(default_factory=dict)
    """Rules for the fields inside each element."""
    replace_element: bool = False
    """A patch element replaces the matching element whole (`retainKeys`, e.g. volumes, so that
    switching a volume from `emptyDir` to `configMap` does not leave both)."""


def _merge_rules(struct: podfields.Struct) -> dict[str, ListMerge | Mapping[str, Any]]:
    rules: dict[str, ListMerge | Mapping[str, Any]] = {}
    for name, kind in struct.fields.items():
        if isinstance(kind, podfields.ListOf) and kind.merge_key is not None:
            element = _merge_rules(kind.item) if isinstance(kind.item, podfields.Struct) else {}
            rules[name] = ListMerge(kind.merge_key, element, kind.replace_element)
        elif isinstance(kind, podfields.Struct) and (inner := _merge_rules(kind)):
            rules[name] = inner
    return rules


TEMPLATE_RULES: Final[Mapping[str, ListMerge | Mapping[str, Any]]] = _merge_rules(
    podfields.POD_TEMPLATE_SPEC
)
"""Merge rules of a `PodTemplateSpec`, from the merge keys of `moorage_api.podfields`."""


def merge_pod_template(base: Mapping[str, Any], patch: Mapping[str, Any]) -> JsonObject:
    """`patch` merged into `base` (strategic-merge semantics); neither input is modified."""
    return _merge_maps(base, patch, TEMPLATE_RULES)


def _merge_maps(
    base: Mapping[str, Any],
    patch: Mapping[str, Any],
    rules: Mapping[str, ListMerge | Mapping[str, Any]],
) -> JsonObject:
    merged: JsonObject = copy.deepcopy(dict(base))
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
            continue
        current = merged.get(key)
        rule = rules.get(key)
        if isinstance(rule, ListMerge) and isinstance(value, list) and isinstance(current, list):
            merged[key] = _merge_lists(current, value, rule)
        elif isinstance(value, Mapping) and isinstance(current, Mapping):
            nested = rule if isinstance(rule, Mapping) else {}
            merged[key] = _merge_maps(current, value, nested)
        else:
            merged[key] = _without_nulls(value)
    return merged


def _merge_lists(base: list[Any], patch: list[Any], rule: ListMerge) -> list[Any]:
    merged = copy.deepcopy(base)
    for item in patch:
        if not isinstance(item, Mapping) or rule.key not in item:
            merged.append(_without_nulls(item))
            continue
        for index, existing in enumerate(merged):
            if isinstance(existing, Mapping) and existing.get(rule.key) == item[rule.key]:
                merged[index] = (
                    _without_nulls(item)
                    if rule.replace_element
                    else _merge_maps(existing, item, rule.element)
                )
                break
        else:
            merged.append(_without_nulls(item))
    return merged


def _without_nulls(value: Any) -> Any:
    """A copy of `value` with null map entries dropped (a null only means "delete" in a patch)."""
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


# -- validation ---------------------------------------------------------------------------------

_STR: Final = "string"
_INT: Final = "integer"
_BOOL: Final = "boolean"
_OBJ: Final = "object"
_STR_MAP: Final = "map of strings"
_STR_LIST: Final = "list of strings"
_OBJ_LIST: Final = "list of objects"
_CONTAINER_LIST: Final = "list of containers"

_QUANTITY_MAP: Final = "map of quantities"

# Field names and JSON types of core/v1 PodSpec and Container, from `moorage_api.podfields`.
# Fields whose inner structure the apiserver validates well enough are only checked for being
# objects.
_POD_SPEC_FIELDS: Final = podfields.json_types(podfields.POD_SPEC)
_CONTAINER_FIELDS: Final = {
    name: podfields.json_types(struct) for name, struct in podfields.CONTAINER_LISTS.items()
}
"""The fields of each list of containers (regular, init and ephemeral ones differ)."""
_REQUIRED_ELEMENT_KEYS: Final = podfields.element_keys(podfields.POD_SPEC)
_REQUIRED_CONTAINER_ELEMENT_KEYS: Final = podfields.element_keys(podfields.CONTAINER)


def parse_pod_patch(text: str, *, source: str = "--k8s-pod-patch") -> JsonObject:
    """The pod template patch in `text` (JSON), validated; `PodPatchError` names what is wrong."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise PodPatchError(f"{source} is not valid JSON: {exc}") from None
    return validate_pod_template(value, source=source)


def validate_pod_template(value: Any, *, source: str) -> JsonObject:
    """`value` if it is a usable `PodTemplateSpec` patch, else `PodPatchError` with the path.

    `null` is allowed wherever a patch may use it to remove a field.
    """
    if not isinstance(value, dict):
        raise PodPatchError(
            f"{source} must be a pod template: a JSON object with 'metadata' and/or 'spec', "
            f"got {describe_json_type(value)}"
        )
    for key, item in value.items():
        path = key
        if key == "metadata":
            _check_metadata(item, source=source, path=path)
        elif key == "spec":
            _check_fields(item, _POD_SPEC_FIELDS, source=source, path=path)
        else:
            raise PodPatchError(
                f"{source}: {_unknown(key)} is not a pod template field (expected 'metadata' "
                f"or 'spec'; give the PodTemplateSpec, not a whole Pod or StatefulSet)"
            )
    return value


def _check_metadata(value: Any, *, source: str, path: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise PodPatchError(f"{source}: {path}: must be an object, got {describe_json_type(value)}")
    for key, item in value.items():
        if item is None:
            # Unset, as `creationTimestamp: null` in generated YAML: nothing to carry or remove.
            continue
        if key not in podfields.TEMPLATE_METADATA_FIELDS:
            raise PodPatchError(
                f"{source}: {path}.{_unknown(key)}: only 'labels' and 'annotations' may be set "
                "in a pod template's metadata"
            )
        _check_value(item, _STR_MAP, source=source, path=f"{path}.{key}")


def _check_fields(
    value: Any, fields: Mapping[str, str], *, source: str, path: str, container: bool = False
) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise PodPatchError(f"{source}: {path}: must be an object, got {describe_json_type(value)}")
    required = _REQUIRED_CONTAINER_ELEMENT_KEYS if container else _REQUIRED_ELEMENT_KEYS
    for key, item in value.items():
        kind = fields.get(key)
        if kind is None:
            what = "container" if container else "pod spec"
            raise PodPatchError(f"{source}: {path}.{_unknown(key)}: not a {what} field")
        _check_value(item, kind, source=source, path=f"{path}.{key}")
        if kind == _OBJ_LIST and isinstance(item, list) and key in required:
            merge_key, merge_type = required[key]
            for index, element in enumerate(item):
                _check_value(
                    element.get(merge_key),
                    merge_type,
                    source=source,
                    path=f"{path}.{key}[{index}].{merge_key}",
                    required=True,
                )
        if kind == _CONTAINER_LIST and isinstance(item, list):
            _check_containers(item, _CONTAINER_FIELDS[key], source=source, path=f"{path}.{key}")


def _check_containers(
    items: list[Any], fields: Mapping[str, str], *, source: str, path: str
) -> None:
    seen: set[str] = set()
    for index, container in enumerate(items):
        element_path = f"{path}[{index}]"
        _check_fields(container, fields, source=source, path=element_path, container=True)
        name = container.get("name")
        if not isinstance(name, str) or not name:
            raise PodPatchError(
                f"{source}: {element_path}.name: every container needs a non-empty name "
                "(containers are merged by name)"
            )
        if name in seen:
            raise PodPatchError(f"{source}: {element_path}.name: duplicate container {name!r}")
        seen.add(name)


def _check_value(value: Any, kind: str, *, source: str, path: str, required: bool = False) -> None:
    if value is None:
        if required:
            raise PodPatchError(f"{source}: {path}: is required (elements are merged by it)")
        return
    problem = _type_problem(value, kind)
    if problem:
        article = "an" if kind[0] in "aeiou" else "a"
        raise PodPatchError(f"{source}: {path}: must be {article} {kind}, got {problem}")


def _type_problem(value: Any, kind: str) -> str:
    """Empty when `value` has JSON type `kind`, else what it is instead."""
    scalar = {_STR: (str,), _INT: (int,), _BOOL: (bool,), _OBJ: (dict,)}
    if kind in scalar:
        ok = isinstance(value, scalar[kind]) and not (kind == _INT and isinstance(value, bool))
        return "" if ok else describe_json_type(value)
    if kind in (_STR_MAP, _QUANTITY_MAP):
        if not isinstance(value, dict):
            return describe_json_type(value)
        # A quantity is a string ("500m") or a JSON number, as Kubernetes reads it.
        allowed = (str,) if kind == _STR_MAP else (str, int, float)
        bad = next((v for v in value.values() if _not_one_of(v, allowed) and v is not None), None)
        return "" if bad is None else f"an object with {describe_json_type(bad)} as a value"
    if not isinstance(value, list):
        return describe_json_type(value)
    element = str if kind == _STR_LIST else dict
    bad = next((v for v in value if not isinstance(v, element)), _MISSING)
    return "" if bad is _MISSING else f"a list containing {describe_json_type(bad)}"


_MISSING: Final = object()


def _not_one_of(value: Any, types: tuple[type, ...]) -> bool:
    return isinstance(value, bool) or not isinstance(value, types)


def _unknown(key: str) -> str:
    if key.startswith("$"):
        return f"{key!r} (strategic-merge directives are not supported)"
    return repr(key)
