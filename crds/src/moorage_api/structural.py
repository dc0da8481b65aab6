"""Structural OpenAPI v3 schemas for CRDs, derived from the pydantic models' JSON schemas.

Pure. Pydantic emits JSON Schema with `$ref`s, `anyOf` with `null` for optional fields, `const`,
titles and `additionalProperties: false`; a CRD needs a *structural* schema: every node typed, no
references, no `null` branches, `properties` and `additionalProperties` never together. This module
rewrites one into the other and refuses (raises `SchemaError`) anything it does not understand
rather than emit a schema the apiserver would reject or silently widen.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from pydantic import BaseModel

JsonSchema = dict[str, Any]

_REF_PREFIX: Final = "#/$defs/"
_KEY_ORDER: Final = (
    "type",
    "description",
    "default",
    "enum",
    "format",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "anyOf",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "items",
    "additionalProperties",
    "properties",
    "required",
    "x-kubernetes-validations",
)
"""Emission order: what a node is first, then its children, then rules about them."""
_VALUE_KEYS: Final = frozenset(_KEY_ORDER) - {
    "default",
    "anyOf",
    "items",
    "additionalProperties",
    "properties",
}
"""Keys copied through unchanged; the others hold schemas or need rewriting."""
_DROPPED_KEYS: Final = frozenset({"title", "$defs"})
_INT_OR_STRING: Final = [{"type": "integer"}, {"type": "string"}]


class SchemaError(ValueError):
    """A model's JSON schema has a construct a structural schema cannot express."""


def structural_schema(model: type[BaseModel]) -> JsonSchema:
    """The structural schema of `model`'s wire form (aliases, validation-mode defaults)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions: dict[str, JsonSchema] = raw.get("$defs", {})
    return _convert(raw, definitions=definitions, path=model.__name__)


def _strip_nulls(value: Any) -> Any:
    # Defaults come from dumping the model's default value; unset optional fields dump as None,
    # which the apiserver would store as explicit nulls.
    if isinstance(value, dict):
        return {key: _strip_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_strip_nulls(item) for item in value]
    return value


def _resolve(node: JsonSchema, *, definitions: dict[str, JsonSchema], path: str) -> JsonSchema:
    """Inline a `$ref`, or collapse `anyOf: [X, null]` to X; sibling keys win over the target."""
    siblings = {key: value for key, value in node.items() if key not in {"$ref", "anyOf"}}
    if "$ref" in node:
        reference = node["$ref"]
        if not reference.startswith(_REF_PREFIX):
            raise SchemaError(f"{path}: unsupported reference {reference}")
        target = definitions[reference.removeprefix(_REF_PREFIX)]
        return {**copy.deepcopy(target), **siblings}
    if "anyOf" in node:
        branches = [branch for branch in node["anyOf"] if branch != {"type": "null"}]
        if node.get("x-kubernetes-int-or-string") and branches == _INT_OR_STRING:
            return node
        if len(branches) != 1:
            raise SchemaError(f"{path}: anyOf with several non-null branches is not structural")
        return _resolve({**branches[0], **siblings}, definitions=definitions, path=path)
    return node


def _convert(node: JsonSchema, *, definitions: dict[str, JsonSchema], path: str) -> JsonSchema:
    node = _resolve(node, definitions=definitions, path=path)
    # A resolved target may itself be a reference or an optional (a type alias of a model).
    while ("$ref" in node) or ("anyOf" in node and not node.get("x-kubernetes-int-or-string")):
        node = _resolve(node, definitions=definitions, path=path)
    out: JsonSchema = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "default":
            if value is not None:
                out["default"] = _strip_nulls(value)
        elif key == "properties":
            out["properties"] = {
                name: _convert(child, definitions=definitions, path=f"{path}.{name}")
                for name, child in value.items()
            }
        elif key == "items":
            out["items"] = _convert(value, definitions=definitions, path=f"{path}[]")
        elif key == "additionalProperties":
            if isinstance(value, dict):
                out["additionalProperties"] = _convert(
                    value, definitions=definitions, path=f"{path}.*"
                )
            elif value is not False or "properties" not in node:
                # `false` next to `properties` is pydantic's extra="forbid"; a structural schema
                # prunes unknown fields by default and the apiserver rejects them under strict
                # field validation, so it is implied.
                raise SchemaError(f"{path}: additionalProperties {value!r} is not structural")
        elif key == "anyOf":
            out["anyOf"] = value
        elif key in _VALUE_KEYS:
            out[key] = copy.deepcopy(value)
        else:
            raise SchemaError(f"{path}: unsupported JSON schema keyword {key!r}")
    _check_typed(out, path=path)
    return {key: out[key] for key in _KEY_ORDER if key in out}


def _check_typed(node: JsonSchema, *, path: str) -> None:
    if "type" in node:
        if "properties" in node and "additionalProperties" in node:
            raise SchemaError(f"{path}: properties and additionalProperties together")
        return
    if node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields"):
        return
    raise SchemaError(f"{path}: schema node without a type")


def walk(node: JsonSchema, *, path: str = "") -> list[tuple[str, JsonSchema]]:
    """Every schema node with its path (`spec.env[].name`, `spec.toolsOverride.*.name`)."""
    nodes = [(path, node)]
    for name, child in node.get("properties", {}).items():
        nodes += walk(child, path=f"{path}.{name}" if path else name)
    if "items" in node:
        nodes += walk(node["items"], path=f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        nodes += walk(node["additionalProperties"], path=f"{path}.*")
    return nodes


_API_VERSION_DESCRIPTION: Final = (
    "APIVersion defines the versioned schema of this representation of an object."
)
_KIND_DESCRIPTION: Final = (
    "Kind is a string value representing the REST resource this object represents."
)


def _field_model(resource: type[BaseModel], name: str) -> type[BaseModel]:
    annotation = resource.model_fields[name].annotation
    if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        raise SchemaError(f"{resource.__name__}.{name} is not a model")
    return annotation


def resource_schema(resource: type[BaseModel]) -> JsonSchema:
    """The `openAPIV3Schema` of a kind: apiVersion, kind, metadata, spec and status.

    `metadata` is left to the apiserver (a CRD may only constrain name and generateName, which we
    do with the kind's root CEL rules); `spec` and `status` come from their models.
    """
    fields = resource.model_fields
    root: JsonSchema = {
        "type": "object",
        "description": (resource.__doc__ or "").strip(),
        "properties": {
            "apiVersion": {"type": "string", "description": _API_VERSION_DESCRIPTION},
            "kind": {"type": "string", "description": _KIND_DESCRIPTION},
            "metadata": {"type": "object"},
        },
        "required": ["spec"],
    }
    for name in ("spec", "status"):
        if name not in fields:
            continue  # a kind without status (MCPTenant) has no status subresource either
        schema = structural_schema(_field_model(resource, name))
        description = fields[name].description
        if description:
            schema["description"] = description
        root["properties"][name] = schema
    extra = resource.model_config.get("json_schema_extra")
    if isinstance(extra, dict) and "x-kubernetes-validations" in extra:
        root["x-kubernetes-validations"] = copy.deepcopy(extra["x-kubernetes-validations"])
    return root
