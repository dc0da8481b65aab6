"""A small structural type checker for JSON values: the shapes of Kubernetes API objects.

Pure: no I/O. Fields the CRD schema keeps open (`podTemplateSpec` is `x-kubernetes-preserve-
unknown-fields`) reach us as arbitrary JSON; the apiserver only checks them when the operator later
writes the StatefulSet, far from the person who made the mistake. A `Shape` walks a value and
reports, with its field path, every place where it does not have the expected type, an unknown
field, or a missing required field. Cross-field rules hang off `Obj.rules` and run once the fields
of that object have the right types.

A JSON `null` counts as "not set" for an optional field, as in the Kubernetes API.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol, assert_never

from moorage_api import podfields
from moorage_api.jsonkinds import describe_json_type
from moorage_api.podfields import INT32_MAX, INT32_MIN
from moorage_webhook.validation.quantities import QuantityError, parse_quantity
from moorage_webhook.validation.verdict import Findings, key_path, quoted

Rule = Callable[[dict[str, Any], str, Findings], None]
"""A cross-field check on an object that is structurally sound (see `Shape.check`)."""


class Shape(Protocol):
    @property
    def expected(self) -> str:
        """What a value of this shape is, for messages ("a string", "an object")."""
        ...

    def check(self, value: object, path: str, out: Findings) -> bool:
        """Report every problem of `value` at `path`.

        True when the value is structurally sound: right types all the way down, no unknown
        fields, required fields present. Value rules (ranges, enums, names) may still have
        reported errors; cross-field rules rely only on soundness.
        """
        ...


def _wrong_type(value: object, path: str, out: Findings, expected: str) -> bool:
    out.error(path, f"must be {expected}, not {describe_json_type(value)}")
    return False


@dataclass(frozen=True, slots=True)
class Str:
    enum: tuple[str, ...] = ()
    """Allowed values; empty means any string."""

    @property
    def expected(self) -> str:
        return "a string"

    def check(self, value: object, path: str, out: Findings) -> bool:
        if not isinstance(value, str):
            return _wrong_type(value, path, out, self.expected)
        if self.enum and value not in self.enum:
            out.error(path, f"{quoted(value)} is not one of {', '.join(self.enum)}")
        return True


@dataclass(frozen=True, slots=True)
class Bool:
    @property
    def expected(self) -> str:
        return "a boolean"

    def check(self, value: object, path: str, out: Findings) -> bool:
        if not isinstance(value, bool):
            return _wrong_type(value, path, out, self.expected)
        return True


@dataclass(frozen=True, slots=True)
class Int:
    minimum: int = INT32_MIN
    maximum: int = INT32_MAX

    @property
    def expected(self) -> str:
        return "an integer"

    def check(self, value: object, path: str, out: Findings) -> bool:
        if isinstance(value, bool) or not isinstance(value, int):
            return _wrong_type(value, path, out, self.expected)
        if not self.minimum <= value <= self.maximum:
            out.error(path, f"{value} is out of range ({self.minimum} to {self.maximum})")
        return True


@dataclass(frozen=True, slots=True)
class IntOrString:
    """A port by number (1-65535) or by name, as probes and Service targets take it."""

    @property
    def expected(self) -> str:
        return "an integer or a string"

    def check(self, value: object, path: str, out: Findings) -> bool:
        if isinstance(value, str):
            if not value:
                out.error(path, "must not be empty")
            return True
        return Int(1, 65535).check(value, path, out)


@dataclass(frozen=True, slots=True)
class Quantity:
    @property
    def expected(self) -> str:
        return "a quantity"

    def check(self, value: object, path: str, out: Findings) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return _wrong_type(value, path, out, "a quantity (a string like 500m or 1Gi)")
        try:
            parse_quantity(value)
        except QuantityError as exc:
            out.error(path, str(exc))
        return True


@dataclass(frozen=True, slots=True)
class ListOf:
    item: Shape

    @property
    def expected(self) -> str:
        return "a list"

    def check(self, value: object, path: str, out: Findings) -> bool:
        if not isinstance(value, list):
            return _wrong_type(value, path, out, self.expected)
        sound = True
        for index, item in enumerate(value):
            sound = self.item.check(item, f"{path}[{index}]", out) and sound
        return sound


@dataclass(frozen=True, slots=True)
class MapOf:
    value: Shape
    key_rule: Callable[[str], str | None] | None = None
    """Returns a problem with a key, or None."""

    @property
    def expected(self) -> str:
        return "an object"

    def check(self, value: object, path: str, out: Findings) -> bool:
        if not isinstance(value, dict):
            return _wrong_type(value, path, out, self.expected)
        sound = True
        for key, item in value.items():
            entry = key_path(path, key)
            if self.key_rule is not None and (why := self.key_rule(key)) is not None:
                out.error(entry, why)
            if item is None:
                out.error(entry, f"must be {self.value.expected}, not null")
                sound = False
            else:
                sound = self.value.check(item, entry, out) and sound
        return sound


@dataclass(frozen=True, slots=True)
class AnyObject:
    """An object whose inside we deliberately do not check (e.g. `affinity` terms)."""

    @property
    def expected(self) -> str:
        return "an object"

    def check(self, value: object, path: str, out: Findings) -> bool:
        if not isinstance(value, dict):
            return _wrong_type(value, path, out, self.expected)
        return True


@dataclass(frozen=True, slots=True)
class Obj:
    fields: Mapping[str, Shape]
    required: frozenset[str] = frozenset()
    rules: tuple[Rule, ...] = ()
    one_of: tuple[str, ...] = ()
    """At most one of these fields may be set (a union such as a volume's source)."""
    one_of_required: bool = False
    """Exactly one of `one_of` must be set."""

    @property
    def expected(self) -> str:
        return "an object"

    def check(self, value: object, path: str, out: Findings) -> bool:
        if not isinstance(value, dict):
            return _wrong_type(value, path, out, self.expected)
        ok = True
        for key, item in value.items():
            child = f"{path}.{key}"
            shape = self.fields.get(key)
            if shape is None:
                out.error(child, _unknown_field(key, self.fields))
                ok = False
            elif item is None:
                if key in self.required:
                    out.error(child, f"required, must be {shape.expected}")
                    ok = False
            elif not shape.check(item, child, out):
                ok = False
        for key in self.required:
            if key not in value:
                out.error(f"{path}.{key}", "required field is missing")
                ok = False
        if self.one_of:
            present = [k for k in self.one_of if value.get(k) is not None]
            if len(present) > 1:
                out.error(path, f"set only one of {', '.join(present)}")
                ok = False
            elif not present and self.one_of_required:
                out.error(path, f"set one of {', '.join(self.one_of)}")
                ok = False
        if ok:
            for rule in self.rules:
                rule(value, path, out)
        return ok


def _unknown_field(key: str, known: Mapping[str, Shape]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.75)
    if close:
        return f"unknown field (did you mean {quoted(close[0])}?)"
    return "unknown field"


STRING: Final = Str()
BOOL: Final = Bool()
QUANTITY: Final = Quantity()
INT_OR_STRING: Final = IntOrString()
ANY_OBJECT: Final = AnyObject()


def shape_of(kind: podfields.Kind, *, rules: Mapping[str, tuple[Rule, ...]]) -> Shape:
    """The shape that checks values of `kind` (from `moorage_api.podfields`); `rules` are the
    cross-field rules of each object type, by its name."""
    objects: dict[int, Obj] = {}

    def convert(kind: podfields.Kind) -> Shape:
        match kind:
            case podfields.Text(enum=enum):
                return Str(enum) if enum else STRING
            case podfields.Integer(minimum=minimum, maximum=maximum):
                return Int(minimum, maximum)
            case podfields.Boolean():
                return BOOL
            case podfields.Quantity():
                return QUANTITY
            case podfields.IntOrString():
                return INT_OR_STRING
            case podfields.Opaque():
                return ANY_OBJECT
            case podfields.ListOf(item=item):
                return ListOf(convert(item))
            case podfields.MapOf(value=value):
                return MapOf(convert(value))
            case podfields.Struct():
                # A type used in several places (a probe, a security context) becomes one shape.
                if (done := objects.get(id(kind))) is None:
                    done = objects[id(kind)] = Obj(
                        {name: convert(field) for name, field in kind.fields.items()},
                        required=kind.required,
                        rules=rules.get(kind.name, ()),
                        one_of=kind.one_of,
                        one_of_required=kind.one_of_required,
                    )
                return done
            case _:
                assert_never(kind)

    return convert(kind)
