"""Building blocks shared by every kind: the model base class, metadata, conditions, env vars.

Pure: no I/O. `ApiModel` fixes the wire conventions once: camelCase names on the wire (snake_case
in Python, both accepted on input), unknown fields rejected, values immutable after validation so
that cached objects can be shared safely (derive changed copies with `model_copy(update=...)`).

`x-kubernetes-*` and CEL rules that the CRD generator must carry are attached with
`json_schema_extra`; the Python validators next to them enforce the same rules for code that builds
or parses objects without an apiserver (webhook, tests, the proxy runner's local mode).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel

DNS1123_SUBDOMAIN_PATTERN: Final = (
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
DNS1123_LABEL_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
ENV_NAME_PATTERN: Final = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
CONFIG_MAP_KEY_PATTERN: Final = r"^[-._a-zA-Z0-9]+$"
QUANTITY_PATTERN: Final = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
CONDITION_TYPE_PATTERN: Final = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN: Final = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"

HTTP_URL_PATTERN: Final = r"^https?://[^\s]+$"
HTTP_URL_MAX_LENGTH: Final = 2048

ObjectName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN_PATTERN),
]
"""Name of a Kubernetes object in the same namespace (DNS-1123 subdomain)."""
ConfigMapKey = Annotated[
    str, StringConstraints(min_length=1, max_length=253, pattern=CONFIG_MAP_KEY_PATTERN)
]
"""A key in a ConfigMap's or Secret's data."""
EnvName = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=ENV_NAME_PATTERN)]
"""An environment variable name as Kubernetes accepts it in a container's env."""


def _check_quantity(value: object) -> int | str:
    # One validator instead of a union so that an error is reported once, at the field.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(QUANTITY_PATTERN, value):
        return value
    raise ValueError(f"{value!r} is not a quantity (expected e.g. 500m, 1Gi, 2)")


Quantity = Annotated[
    int | str,
    PlainValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]
"""A Kubernetes resource quantity (`500m`, `1Gi`, `2`)."""
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
"""An RFC 3339 time as Kubernetes writes it (`2025-01-31T12:00:00Z`)."""

ConditionStatus = Literal["True", "False", "Unknown"]


def cel(
    rule: str, *, message: str, field_path: str | None = None, reason: str | None = None
) -> dict[str, str]:
    """One `x-kubernetes-validations` entry; `field_path` points the error at a child field."""
    entry = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    if reason is not None:
        entry["reason"] = reason
    return entry


def set_exactly_for_type(member: str) -> dict[str, str]:
    """CEL: field `member` is set exactly when `self.type` is its name (`inline`, `configMap`)."""
    return cel(
        f"self.type == '{member}' ? has(self.{member}) : !has(self.{member})",
        message=f"{member} is required when type is {member} and not allowed otherwise",
        field_path=f".{member}",
    )


def check_member_for_type(type_value: str, *, member: str, value: object) -> None:
    """The Python side of `set_exactly_for_type`: raise `ValueError` naming `member`."""
    if type_value == member and value is None:
        raise ValueError(f"{member}: required when type is {member}")
    if type_value != member and value is not None:
        raise ValueError(f"{member}: not allowed when type is {type_value}")


def object_name_rules(*, max_length: int, pattern: str, why: str) -> dict[str, Any]:
    """`json_schema_extra` for a kind whose name is embedded in its children's names.

    No `fieldPath`: the CRD schema of `metadata` has no properties to point at; the messages name
    the field instead.
    """
    return validations(
        cel(
            f"self.metadata.name.size() <= {max_length}",
            message=f"metadata.name must be at most {max_length} characters ({why})",
        ),
        cel(
            f"self.metadata.name.matches('{pattern}')",
            message="metadata.name must be lower-case letters, digits and '-', starting with a letter",
        ),
    )


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    """`json_schema_extra` carrying CEL rules for the CRD generator."""
    return {"x-kubernetes-validations": list(rules)}


def list_map(*keys: str) -> dict[str, Any]:
    """`json_schema_extra` for a list the apiserver merges by key (keys are unique)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


LIST_SET: Final[dict[str, Any]] = {"x-kubernetes-list-type": "set"}
"""`json_schema_extra` for a list of unique scalars."""


CAMEL_CASE_CONFIG: Final = ConfigDict(
    alias_generator=to_camel,
    validate_by_name=True,
    validate_by_alias=True,
    serialize_by_alias=True,
    frozen=True,
)
"""camelCase on the wire, snake_case in Python (both accepted on input), immutable."""


class ApiModel(BaseModel):
    """Base of every resource body model: camelCase wire names, no unknown fields, immutable."""

    model_config = CAMEL_CASE_CONFIG | ConfigDict(extra="forbid")


class ObjectMeta(BaseModel):
    """The parts of `metav1.ObjectMeta` Moorage reads; every other metadata field is kept as is."""

    model_config = CAMEL_CASE_CONFIG | ConfigDict(extra="allow")

    name: str | None = Field(None, description="Name of the object, unique in its namespace.")
    generate_name: str | None = Field(None, description="Prefix for a server-generated name.")
    namespace: str | None = Field(None, description="Namespace of the object.")
    uid: str | None = Field(None, description="Unique id the apiserver assigned.")
    resource_version: str | None = Field(None, description="Opaque version for concurrency.")
    generation: int | None = Field(None, description="Sequence number of spec changes.")
    creation_timestamp: str | None = Field(None, description="When the object was created.")
    deletion_timestamp: str | None = Field(None, description="When deletion was requested.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels of the object.")
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations of the object."
    )
    finalizers: list[str] = Field(
        default_factory=list, description="Finalizers that must be removed before deletion."
    )
    owner_references: list[dict[str, Any]] = Field(
        default_factory=list, description="Objects this object depends on."
    )


class Condition(ApiModel):
    """One observation of an object's state, shaped exactly like `metav1.Condition`."""

    type: str = Field(
        ...,
        max_length=316,
        pattern=CONDITION_TYPE_PATTERN,
        description="Kind of condition, in CamelCase (`Ready`, `Valid`).",
    )
    status: ConditionStatus = Field(..., description="`True`, `False` or `Unknown`.")
    observed_generation: int | None = Field(
        None, ge=0, description="The `.metadata.generation` the condition was computed from."
    )
    last_transition_time: Timestamp = Field(
        ..., description="When `status` last changed (RFC 3339)."
    )
    reason: str = Field(
        ...,
        min_length=1,
        max_length=1024,
        pattern=CONDITION_REASON_PATTERN,
        description="Machine-readable CamelCase reason for the last transition.",
    )
    message: str = Field(
        ...,
        max_length=32768,
        description="Human-readable sentence about the transition.",
    )


CONDITIONS_FIELD_EXTRA: Final[dict[str, Any]] = list_map("type")


class EnvVar(ApiModel):
    """A plain environment variable."""

    name: EnvName = Field(..., description="Variable name; unique within the list.")
    value: str = Field("", description="Variable value.")


class ResourceRequirements(ApiModel):
    """Compute resources of a container, as in `corev1.ResourceRequirements`."""

    limits: dict[str, Quantity] = Field(
        default_factory=dict, description="Maximum resources (`cpu`, `memory`, ...)."
    )
    requests: dict[str, Quantity] = Field(
        default_factory=dict, description="Resources the scheduler reserves."
    )


class SecretKeySelector(ApiModel):
    """A key of a Secret in the same namespace."""

    name: ObjectName = Field(..., description="Name of the Secret.")
    key: ConfigMapKey = Field(..., description="Key in the Secret's data.")


def find_duplicates(values: list[str]) -> list[str]:
    """Values that occur more than once, in order of their second occurrence."""
    seen: set[str] = set()
    duplicates: list[str] = []
    for value in values:
        if value in seen and value not in duplicates:
            duplicates.append(value)
        seen.add(value)
    return duplicates


def check_object_name(name: str | None, *, max_length: int, pattern: str) -> None:
    """Raise `ValueError` naming `metadata.name` when it cannot name the object's children."""
    if name is None:
        return
    if len(name) > max_length:
        raise ValueError(f"metadata.name: must be at most {max_length} characters")
    if re.fullmatch(pattern, name) is None:
        raise ValueError(
            "metadata.name: must be lower-case letters, digits and '-', starting with a letter"
        )


def format_location(loc: tuple[int | str, ...], *, prefix: str = "") -> str:
    """`("spec", "env", 0, "name")` → `spec.env[0].name`, after `prefix` when given."""
    text = prefix
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text = f"{text}.{part}" if text else part
    return text


def validation_messages(error: ValidationError, *, prefix: str = "") -> list[str]:
    """One `field.path: what is wrong` line per problem, with wire (camelCase) field names."""
    lines: list[str] = []
    for item in error.errors(include_url=False):
        message = item["msg"]
        # A model validator's message already names its fields; pydantic prefixes "Value error, ".
        message = message.removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        elif item["type"] == "missing":
            message = "required field is missing"
        loc = tuple(item["loc"])
        if not loc and not prefix:
            # A whole-object rule: its message starts with the field it is about.
            lines.append(message)
        else:
            lines.append(f"{format_location(loc, prefix=prefix)}: {message}")
    return lines
