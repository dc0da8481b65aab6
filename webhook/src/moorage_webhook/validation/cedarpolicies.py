"""Cedar policies and entities of `spec.authzConfig.inline`: do they parse, can they ever match?

Pure: no I/O. Parsing is done by cedarpy (the Cedar engine the proxy runner evaluates with), so
what the webhook admits is exactly what the proxy can load. Results are memoised by text: the same
policies come back on every update of an MCPServer, and a parse costs far more than a dict lookup.

cedarpy's parser recurses on the native stack and a deep enough policy kills the process, so no
text reaches it before `moorage_api.cedarbounds` has bounded its nesting and size; those bounds
keep the parser, its JSON conversion and Python's `json.loads` of that JSON well inside their
limits (RecursionError is still caught, as a last line).

Beyond syntax, a policy that names an action, principal type or resource type Moorage never asks
about is legal but can never apply; those get a warning (spec §4.4: principal `Client`, actions
`call_tool`/`get_prompt`/`read_resource`, resources `Tool`/`Prompt`/`Resource`).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, Final

import cedarpy

from moorage_api.cedarbounds import (
    MAX_NESTING,
    MAX_OPERATORS,
    PolicyBoundsError,
    check_policy_bounds,
)

ACTIONS: Final = frozenset({"call_tool", "get_prompt", "read_resource"})
ACTION_TYPE: Final = "Action"
PRINCIPAL_TYPE: Final = "Client"
RESOURCE_TYPES: Final = frozenset({"Tool", "Prompt", "Resource"})
_CACHE_SIZE: Final = 512
_TOO_DEEP: Final = (
    f"is nested too deeply for Cedar (at most {MAX_NESTING} levels of brackets and "
    f"{MAX_OPERATORS} operators in one policy)"
)


@dataclass(frozen=True, slots=True)
class PolicyCheck:
    """What is known about one policy text: a parse error, or warnings about what it names."""

    error: str | None = None
    warnings: tuple[str, ...] = ()


def _entity(constraint: dict[str, Any]) -> tuple[str, str] | None:
    entity = constraint.get("entity")
    if isinstance(entity, dict) and "type" in entity and "id" in entity:
        return str(entity["type"]), str(entity["id"])
    return None


def _scope_warnings(label: str, policy: dict[str, Any]) -> list[str]:
    warnings: list[str] = []
    action = policy.get("action") or {}
    entities: list[Any] = []
    if action.get("op") == "==":
        entities = [action.get("entity")]
    elif action.get("op") == "in":
        entities = action.get("entities") or [action.get("entity")]
    for entity in entities:
        if not isinstance(entity, dict):
            continue
        etype, eid = str(entity.get("type")), str(entity.get("id"))
        # `in` may name an action group defined in entitiesJson, so only `==` is held to the
        # three actions by id; any other entity type can never be an action.
        if etype != ACTION_TYPE or (action.get("op") == "==" and eid not in ACTIONS):
            warnings.append(
                f"{label} names {etype}::{json.dumps(eid)}, which Moorage never evaluates "
                f"(actions: {', '.join(sorted(ACTIONS))})"
            )
    principal = policy.get("principal") or {}
    if principal.get("op") == "==" and (found := _entity(principal)) is not None:
        if found[0] != PRINCIPAL_TYPE:
            warnings.append(
                f"{label} names principal type {found[0]}, but callers are {PRINCIPAL_TYPE}"
            )
    elif principal.get("op") == "is" and principal.get("entity_type") != PRINCIPAL_TYPE:
        warnings.append(
            f"{label} names principal type {principal.get('entity_type')}, "
            f"but callers are {PRINCIPAL_TYPE}"
        )
    resource = policy.get("resource") or {}
    rtype: str | None = None
    if resource.get("op") == "==" and (found := _entity(resource)) is not None:
        rtype = found[0]
    elif resource.get("op") == "is":
        rtype = str(resource.get("entity_type"))
    if rtype is not None and rtype not in RESOURCE_TYPES:
        warnings.append(
            f"{label} names resource type {rtype}, which Moorage never evaluates "
            f"(resources: {', '.join(sorted(RESOURCE_TYPES))})"
        )
    return warnings


@functools.lru_cache(maxsize=_CACHE_SIZE)
def check_policy_text(text: str) -> PolicyCheck:
    """Parse one entry of `policies[]` (which may hold several policies)."""
    try:
        check_policy_bounds(text)
    except PolicyBoundsError as exc:
        return PolicyCheck(error=str(exc))
    try:
        policy_set = cedarpy.PolicySet.from_str(text)
        est = json.loads(cedarpy.policies_to_json_str(text))
    except ValueError as exc:
        return PolicyCheck(error=f"is not a valid Cedar policy: {exc}")
    except RecursionError:
        return PolicyCheck(error=_TOO_DEEP)
    if policy_set.templates():
        return PolicyCheck(
            error="is a Cedar template (it has ?principal or ?resource slots); "
            "write static policies"
        )
    if len(policy_set) == 0:
        return PolicyCheck(error="contains no Cedar policy")
    policies = est.get("staticPolicies") or {}
    warnings: list[str] = []
    for number, key in enumerate(sorted(policies, key=_policy_order), start=1):
        label = "the policy" if len(policies) == 1 else f"policy {number}"
        warnings.extend(_scope_warnings(label, policies[key]))
    return PolicyCheck(warnings=tuple(warnings))


def _policy_order(policy_id: str) -> tuple[int, str]:
    # cedarpy names policies policy0, policy1, ... in source order.
    digits = policy_id.removeprefix("policy")
    return (int(digits), policy_id) if digits.isdigit() else (1 << 30, policy_id)


def _uid_problem(value: object, where: str) -> str | None:
    if not isinstance(value, dict):
        return f"{where} must be an object with type and id"
    if not isinstance(value.get("type"), str) or not value.get("type"):
        return f"{where}.type must be a non-empty string (an entity type such as Client)"
    if not isinstance(value.get("id"), str):
        return f"{where}.id must be a string"
    return None


@functools.lru_cache(maxsize=_CACHE_SIZE)
def check_entities_json(text: str) -> str | None:
    """None when `text` is a Cedar entities document; otherwise what is wrong with it."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        return f"is not JSON: {exc}"
    except RecursionError:
        return "is nested too deeply (Cedar entities may nest at most about 100 levels)"
    if not isinstance(document, list):
        return "must be a JSON list of Cedar entities ([] for none)"
    for index, entity in enumerate(document):
        where = f"entity [{index}]"
        if not isinstance(entity, dict):
            return f"{where} must be an object with uid, attrs and parents"
        if (why := _uid_problem(entity.get("uid"), f"{where}.uid")) is not None:
            return why
        if not isinstance(entity.get("attrs"), dict):
            return f"{where}.attrs must be an object ({{}} for none)"
        parents = entity.get("parents")
        if not isinstance(parents, list):
            return f"{where}.parents must be a list ([] for none)"
        for pindex, parent in enumerate(parents):
            if (why := _uid_problem(parent, f"{where}.parents[{pindex}]")) is not None:
                return why
    try:
        cedarpy.Entities.from_json_str(text)
    except ValueError as exc:
        return f"is not a valid Cedar entities document: {exc}"
    return None
