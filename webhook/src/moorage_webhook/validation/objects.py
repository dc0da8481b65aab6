"""The validation flow every kind shares: model first, then the rules a schema cannot state.

Pure: no I/O. For one admission of an object:

1. An update that leaves `spec` alone (labels, finalizers, annotations) is admitted without
   checks: the operator must always be able to remove its finalizer, even from an object that
   today's rules would reject. So is any write to an object that is being deleted.
2. The object (without `status`, which a main-resource write cannot change) is parsed with its
   `moorage_api` model: the same types, defaults and schema rules as the CRD. Errors there are
   reported with their field paths and end the validation, since the kind's rules need a model.
3. The kind's rules run on the model (and on the old model for an update).
4. Ratcheting, as the apiserver does for CRD schemas: on an update, an error the old object had
   as well is reported as a warning instead, so that an object admitted before a rule existed can
   still be edited; only new problems reject.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ValidationError

from moorage_api.base import (
    CONFIG_MAP_KEY_PATTERN,
    DNS1123_SUBDOMAIN_PATTERN,
    ENV_NAME_PATTERN,
    HTTP_URL_PATTERN,
    QUANTITY_PATTERN,
    format_location,
)
from moorage_api.durations import DURATION_PATTERN, DurationError, parse_go_duration
from moorage_api.mcpregistry import (
    GIT_COMMIT_PATTERN,
    GIT_REF_NAME_PATTERN,
    GIT_REPOSITORY_PATTERN,
    RELATIVE_PATH_PATTERN,
)
from moorage_api.mcpremoteproxy import HEADER_VALUE_PATTERN
from moorage_api.mcpserver import (
    ALLOWED_HOST_PATTERN,
    ENDPOINT_PREFIX_PATTERN,
    SERVICE_ACCOUNT_REF_PATTERN,
)
from moorage_api.outgoing import HEADER_NAME_PATTERN
from moorage_webhook.validation.locations import (
    git_commit_problem,
    git_ref_problem,
    git_repository_problem,
    https_url_problem,
)
from moorage_webhook.validation.names import (
    allowed_host_problem,
    config_key_problem,
    dns1123_subdomain_problem,
    env_name_problem,
)
from moorage_webhook.validation.quantities import QuantityError, parse_quantity
from moorage_webhook.validation.verdict import Findings, Problem, Verdict, quoted

ModelT = TypeVar("ModelT", bound=BaseModel)

Rules = Callable[[ModelT, ModelT | None, dict[str, Any], Findings], None]
"""A kind's rules: (new model, old model or None, new raw object, findings)."""

Refiner = Callable[[str], str | None]
"""A better message for a model error about a string, from the raw value (None: keep pydantic's)."""

RATCHETED_PREFIX: Final = "already invalid before this change, fix when you can: "


def _quantity_problem(text: str) -> str | None:
    try:
        parse_quantity(text)
    except QuantityError as exc:
        return str(exc)
    return None


def _duration_problem(text: str) -> str | None:
    try:
        parse_go_duration(text)
    except DurationError as exc:
        return str(exc)
    return None


def _expecting(what: str) -> Refiner:
    return lambda value: f"{quoted(value)} {what}"


_PATTERN_REFINERS: Final[dict[str, Callable[[str], str | None]]] = {
    DNS1123_SUBDOMAIN_PATTERN: dns1123_subdomain_problem,
    ENV_NAME_PATTERN: env_name_problem,
    CONFIG_MAP_KEY_PATTERN: config_key_problem,
    QUANTITY_PATTERN: _quantity_problem,
    DURATION_PATTERN: _duration_problem,
    GIT_REPOSITORY_PATTERN: git_repository_problem,
    GIT_COMMIT_PATTERN: git_commit_problem,
    GIT_REF_NAME_PATTERN: git_ref_problem,
    RELATIVE_PATH_PATTERN: _expecting("must be a relative path without spaces"),
    HTTP_URL_PATTERN: lambda url: https_url_problem(url, what="URL"),
    SERVICE_ACCOUNT_REF_PATTERN: _expecting(
        "must be namespace/name of a service account (lowercase DNS names)"
    ),
    ALLOWED_HOST_PATTERN: allowed_host_problem,
    ENDPOINT_PREFIX_PATTERN: _expecting(
        "must be a URL path starting with '/', without spaces, '?' or '#'"
    ),
    HEADER_NAME_PATTERN: _expecting(
        "is not an HTTP header name (letters, digits and !#$%&'*+.^_`|~-, no spaces or colons)"
    ),
    HEADER_VALUE_PATTERN: lambda _: "a header value must not contain a line break or NUL",
}
"""Readable messages for the schema's patterns, in place of "String should match pattern"."""


def spec_unchanged(new: dict[str, Any], old: dict[str, Any] | None) -> bool:
    return old is not None and new.get("spec") == old.get("spec")


def is_being_deleted(obj: dict[str, Any]) -> bool:
    metadata = obj.get("metadata")
    return isinstance(metadata, dict) and metadata.get("deletionTimestamp") is not None


def _model_problems(
    error: ValidationError, obj: dict[str, Any], refiners: dict[tuple[str | int, ...], Refiner]
) -> list[Problem]:
    problems: list[Problem] = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        elif item["type"] == "missing":
            message = "required field is missing"
        refiner = refiners.get(loc)
        if refiner is None and item["type"] == "string_pattern_mismatch":
            refiner = _PATTERN_REFINERS.get(str((item.get("ctx") or {}).get("pattern")))
        value = _value_at(obj, loc)
        if refiner is not None and isinstance(value, str) and (better := refiner(value)):
            message = better
        path = format_location(loc)
        if not path:
            # A rule over the whole object names its field at the start of its message.
            head, sep, rest = message.partition(": ")
            path, message = (head, rest) if sep and " " not in head else ("<object>", message)
        problems.append(Problem(path, message))
    return problems


def _value_at(obj: object, loc: tuple[str | int, ...]) -> object:
    for part in loc:
        if isinstance(obj, dict) and isinstance(part, str):
            obj = obj.get(part)
        elif isinstance(obj, list) and isinstance(part, int) and 0 <= part < len(obj):
            obj = obj[part]
        else:
            return None
    return obj


def _parse(
    obj: dict[str, Any],
    *,
    model: type[ModelT],
    refiners: dict[tuple[str | int, ...], Refiner],
    out: Findings,
) -> ModelT | None:
    """The model of `obj` (without `status`), or None with the reasons reported into `out`."""
    body = {k: v for k, v in obj.items() if k != "status"}
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        for problem in _model_problems(exc, body, refiners):
            out.error(problem.path, problem.message)
        return None


def validate_object(
    new: dict[str, Any],
    *,
    old: dict[str, Any] | None,
    model: type[ModelT],
    rules: Rules[ModelT],
    refiners: dict[tuple[str | int, ...], Refiner] | None = None,
) -> Verdict:
    """Run the flow described in the module docstring for one kind."""
    if spec_unchanged(new, old) or is_being_deleted(new):
        return Verdict()
    refiners = refiners or {}
    old_out = Findings()
    old_model = None if old is None else _parse(old, model=model, refiners=refiners, out=old_out)
    out = Findings()
    parsed = _parse(new, model=model, refiners=refiners, out=out)
    if parsed is not None:
        rules(parsed, old_model, new, out)
    if old is None or not out.errors:
        return out.verdict()
    # Only now is the old object's own verdict needed: to tell old problems from new ones.
    if old_model is not None:
        rules(old_model, None, old, old_out)
    tolerated = set(old_out.errors)
    ratcheted = Findings()
    for problem in out.errors:
        if problem in tolerated:
            ratcheted.warn(problem.path, RATCHETED_PREFIX + problem.message)
        else:
            ratcheted.error(problem.path, problem.message)
    for warning in out.warnings:
        ratcheted.warn(warning.path, warning.message)
    ratcheted.omitted_errors = out.omitted_errors
    return ratcheted.verdict()
