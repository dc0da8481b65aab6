"""Cedar authorisation of MCP requests (spec §4.4): the entity model, the policy engine, the step.

The model: the principal is `Client::"<sub>"` with the caller's token claims as attributes (a
JSON array becomes a Set, an object a record); an unauthenticated caller is `Client::""` with no
attributes. Actions are `Action::"call_tool"`, `Action::"get_prompt"` and
`Action::"read_resource"`; resources `Tool::"<name>"` (the name the client sees, after renaming),
`Prompt::"<name>"` and `Resource::"<uri>"`. The request's arguments are `context.arguments`.
The configured `entitiesJson` is merged in: entities of type `Client` are merged into the
principal (their parents and attributes, the token's claims winning), all others (tool groups,
say) form the base entity set.

Policies are parsed once per change (`compile_authz`, cached by its text), after the shared
bounds of `moorage_api.cedarbounds` (a policy beyond them could crash the parser). Every request is
decided, fail-closed: a method outside the model is refused while authorisation is on. Lists
(`tools/list`, `prompts/list`, `resources/list`) are filtered to what the caller may use: an entry
is kept when a call is permitted outright with no arguments, or when only the arguments decide
(Cedar's partial evaluation with the context unknown leaves a permit policy standing). The call
itself is always decided in full. A denial is HTTP 403 with a JSON-RPC error.

Resource templates (`resources/templates/list`) are decided as `read_resource` on
`Resource::"<uriTemplate>"`: the template text itself is the resource id (say
`Resource::"file:///logs/{name}"`), so a policy shows a template by naming it, or by a condition
on the resource that the template's text meets. A template no policy could let the caller read
under that id is left out. Reading a concrete URI made from it is still decided on that URI.

Argument keys are read by Cedar under their exact names, but a server decoding with Go's
`encoding/json` reads `"Path"` as `path`. So the attribute names the policies read are collected
once per change (`read_attributes`), and a decided request whose `arguments` hold, at any depth,
a key that casefolds to one of them but is spelt otherwise is refused with -32602 (HTTP 400)
naming the key and the spelling the policies use (`misspelt_argument`).

Resource subscriptions are reads: `resources/subscribe` and every URI in the
`resourceSubscriptions` of a `subscriptions/listen` are decided as `read_resource` on that URI,
and one URI denied refuses the whole request.

No I/O: the step only decides and rewrites.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final

import cedarpy
import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

from moorage_api.cedarbounds import PolicyBoundsError, check_policies_bounds, join_policies
from moorage_proxyrunner.protocol.eras import (
    LEGACY_CLIENT_NOTIFICATIONS,
    MODERN_CLIENT_NOTIFICATIONS,
)
from moorage_proxyrunner.protocol.jsonrpc import FORBIDDEN, INVALID_PARAMS, Json, error_response
from moorage_proxyrunner.protocol.pipeline import CallNext, Identity, McpCall, Reply

log = structlog.get_logger(__name__)

ANONYMOUS_ID: Final = ""
"""The principal id of a caller without a token (`Client::""`); a token's `sub` is never empty."""

MAX_DEPTH: Final = 32
"""JSON nested deeper than this is left out of Cedar values (tokens and arguments are input)."""

_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Target:
    """What one request acts on: `Action::"<action>"` on `<kind>::"<name>"`."""

    action: str
    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class Listing:
    """How a list method's result is filtered: entries under `key`, named by `field`."""

    key: str
    action: str
    kind: str
    field: str


TARGETED: Final[Mapping[str, tuple[str, str, str]]] = {
    "tools/call": ("call_tool", "Tool", "name"),
    "prompts/get": ("get_prompt", "Prompt", "name"),
    "resources/read": ("read_resource", "Resource", "uri"),
    "resources/subscribe": ("read_resource", "Resource", "uri"),
}
"""Methods decided on their target: (action, entity type, the params member naming it)."""

LISTINGS: Final[Mapping[str, Listing]] = {
    "tools/list": Listing("tools", "call_tool", "Tool", "name"),
    "prompts/list": Listing("prompts", "get_prompt", "Prompt", "name"),
    "resources/list": Listing("resources", "read_resource", "Resource", "uri"),
    "resources/templates/list": Listing(
        "resourceTemplates", "read_resource", "Resource", "uriTemplate"
    ),
}

OPEN_METHODS: Final = frozenset(
    {
        "initialize",
        "ping",
        "server/discover",
        "logging/setLevel",
        "resources/unsubscribe",
    }
)
"""Methods that read nothing a policy guards: served to any caller. Every other method that is
not targeted, listed or `completion/complete` is refused while authorisation is on."""

CLIENT_NOTIFICATIONS: Final = LEGACY_CLIENT_NOTIFICATIONS | MODERN_CLIENT_NOTIFICATIONS
"""Notifications the protocol lets clients send: they act on nothing a policy guards, so they
pass; any other notification is refused like an unknown method."""


class AuthzConfigError(ValueError):
    """Policies or entities that cannot be used; the message says which and why."""


# -- Cedar values ------------------------------------------------------------------------------


_SKIP: Final = object()


def cedar_value(value: Any, *, depth: int = 0) -> Any:
    """A JSON value as a Cedar JSON value, or `_SKIP` when Cedar has nothing for it.

    Arrays become Sets (unrepresentable members dropped), objects records. Record keys starting
    with `__` are dropped: Cedar's JSON reads `__entity`/`__extn` objects as entity references and
    extension values, and a client must not be able to forge those. Floats that are not integral,
    integers outside 64 bits and null have no Cedar form: a policy reading them fails to apply,
    which denies.
    """
    if depth > MAX_DEPTH:
        return _SKIP
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if _I64_MIN <= value <= _I64_MAX else _SKIP
    if isinstance(value, float):
        if value.is_integer() and _I64_MIN <= value <= _I64_MAX:
            return int(value)
        return _SKIP
    if isinstance(value, list):
        items = (cedar_value(v, depth=depth + 1) for v in value)
        return [v for v in items if v is not _SKIP]
    if isinstance(value, dict):
        return cedar_record(value, depth=depth)
    return _SKIP


def cedar_record(data: Mapping[str, Any], *, depth: int = 0) -> dict[str, Any]:
    """A JSON object as a Cedar record (see `cedar_value`)."""
    record: dict[str, Any] = {}
    for key, raw in data.items():
        if not isinstance(key, str) or key.startswith("__"):
            continue
        value = cedar_value(raw, depth=depth + 1)
        if value is not _SKIP:
            record[key] = value
    return record


def _uid(kind: str, name: str) -> dict[str, str]:
    return {"type": kind, "id": name}


def cedar_string(text: str) -> str:
    """`text` as a Cedar string literal (for the surface-syntax UIDs partial evaluation takes)."""
    out = ['"']
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        else:
            out.append(f"\\u{{{ord(char):x}}}")
    out.append('"')
    return "".join(out)


# -- compiled configuration --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompiledAuthz:
    """Policies and entities parsed once; shared by every request until the next change.

    `permits`: ids of the permit policies (to read partial evaluation); `clients`: `Client`
    entities of `entitiesJson` by id; `base`: every other configured entity; `spellings`: see
    `misspelt_argument`.
    """

    policies: cedarpy.PolicySet
    permits: frozenset[str]
    base: cedarpy.Entities
    clients: Mapping[str, Json]
    source: tuple[tuple[str, ...], str]
    spellings: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Every attribute name the policies read, by its casefolded form (`read_attributes`)."""


def compile_authz(policies: Sequence[str], entities_json: str = "[]") -> CompiledAuthz:
    """Parse and check policies and entities; `AuthzConfigError` naming what is wrong."""
    return _compile(tuple(policies), entities_json)


@lru_cache(maxsize=16)
def _compile(policies: tuple[str, ...], entities_json: str) -> CompiledAuthz:
    if not policies:
        raise AuthzConfigError("authz: at least one Cedar policy is needed")
    try:
        # cedarpy overflows the native stack (and the process dies) on deep enough text: the
        # bounds come first, whoever wrote the RunConfig.
        check_policies_bounds(policies)
    except PolicyBoundsError as exc:
        raise AuthzConfigError(f"authz.{exc.field}: {exc}") from None
    text = join_policies(policies)
    try:
        policy_set = cedarpy.PolicySet.from_str(text)
        described = json.loads(cedarpy.policies_to_json_str(text))
    except ValueError as exc:
        raise AuthzConfigError(f"authz.policies: not valid Cedar: {exc}") from None
    except RecursionError:
        raise AuthzConfigError("authz.policies: nested too deeply to read") from None
    if described.get("templates"):
        raise AuthzConfigError("authz.policies: policy templates are not supported")
    if len(policy_set) == 0:
        raise AuthzConfigError("authz.policies: no policy in the text")
    permits = frozenset(
        pid
        for pid, body in (described.get("staticPolicies") or {}).items()
        if body.get("effect") == "permit"
    )
    try:
        entities = json.loads(entities_json)
    except ValueError as exc:
        raise AuthzConfigError(f"authz.entities_json: not JSON: {exc}") from None
    except RecursionError:
        raise AuthzConfigError("authz.entities_json: nested too deeply to read") from None
    if not isinstance(entities, list):
        raise AuthzConfigError("authz.entities_json: must be a JSON array of entities")
    clients: dict[str, Json] = {}
    others: list[Any] = []
    for index, entity in enumerate(entities):
        uid = entity.get("uid") if isinstance(entity, dict) else None
        if not isinstance(uid, dict):
            raise AuthzConfigError(f"authz.entities_json[{index}]: an entity needs a uid object")
        if uid.get("type") == "Client" and isinstance(uid.get("id"), str):
            clients[uid["id"]] = entity
        else:
            others.append(entity)
    try:
        base = cedarpy.Entities.from_json_str(json.dumps(others))
        for entity in clients.values():
            base.with_added_json_str(json.dumps([entity]))
    except ValueError as exc:
        raise AuthzConfigError(f"authz.entities_json: not valid Cedar entities: {exc}") from None
    spellings: dict[str, set[str]] = {}
    for name in read_attributes(described):
        spellings.setdefault(name.casefold(), set()).add(name)
    return CompiledAuthz(
        policy_set,
        permits,
        base,
        clients,
        (policies, entities_json),
        {folded: frozenset(names) for folded, names in spellings.items()},
    )


def read_attributes(described: Any) -> frozenset[str]:
    """Every attribute name in Cedar's JSON form of policies: `.attr`, `["attr"]` (both `.`
    nodes), `has attr` and record literal keys. Over-inclusive on purpose (it does not tell
    `context.arguments` from the principal's attributes): a name counts wherever it is read."""
    names: set[str] = set()
    stack = [described]
    while stack:  # a loop, not recursion: the bounds allow deep expressions
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        for op in (".", "has"):
            inner = node.get(op)
            if isinstance(inner, dict) and isinstance(inner.get("attr"), str):
                names.add(inner["attr"])
        record = node.get("Record")
        if isinstance(record, dict):
            names.update(record)
        stack.extend(node.values())
    return frozenset(names)


def misspelt_argument(
    arguments: Any, spellings: Mapping[str, frozenset[str]]
) -> tuple[str, str] | None:
    """(key, expected) for the first key in `arguments`, at any depth, that casefolds to an
    attribute the policies read but is spelt otherwise; None when there is none.

    Cedar reads attributes by their exact names; a server decoding with Go's `encoding/json`
    reads `"Path"` as `path`. Without this rule `{"Path": "/etc/shadow"}` would pass a policy
    forbidding `context.arguments.path like "/etc/*"` and reach the server as `path`.
    """
    if not spellings:
        return None
    stack = [arguments]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            for key, value in node.items():
                spelt = spellings.get(key.casefold())
                if spelt is not None and key not in spelt:
                    return key, min(spelt)
                if isinstance(value, dict | list):
                    stack.append(value)
    return None


def principal_entity(identity: Identity, configured: Json | None) -> Json:
    """The caller as a Cedar entity: claims as attributes over the configured entity's."""
    attrs: dict[str, Any] = {}
    parents: list[Any] = []
    if configured is not None:
        configured_attrs = configured.get("attrs")
        if isinstance(configured_attrs, dict):
            attrs.update(configured_attrs)
        configured_parents = configured.get("parents")
        if isinstance(configured_parents, list):
            parents = list(configured_parents)
    attrs.update(cedar_record(identity.claims))
    return {"uid": _uid("Client", principal_id(identity)), "attrs": attrs, "parents": parents}


def principal_id(identity: Identity) -> str:
    return identity.subject if identity.subject else ANONYMOUS_ID


# -- decisions ---------------------------------------------------------------------------------


class AuthzMetrics:
    """Decisions by result, and how long they take."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter(
            "moorage_proxy_authz_decisions_total",
            "Cedar authorisation decisions, by result (allow, deny).",
            ["decision"],
            registry=registry,
        )
        self.duration = Histogram(
            "moorage_proxy_authz_duration_seconds",
            "Time to decide one request (or filter one list) with Cedar.",
            buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01),
            registry=registry,
        )


class Authorizer:
    """Decides requests against one `CompiledAuthz` (immutable; a change builds a new one)."""

    def __init__(self, compiled: CompiledAuthz) -> None:
        self.compiled = compiled
        self._recent: tuple[Identity, tuple[Json, cedarpy.Entities]] | None = None

    def _entities(self, identity: Identity) -> tuple[Json, cedarpy.Entities]:
        # Authentication hands out the same Identity for the same token: a client's requests
        # reuse the entity set built for its first one.
        recent = self._recent
        if recent is not None and recent[0] is identity:
            return recent[1]
        built = self._build_entities(identity)
        self._recent = (identity, built)
        return built

    def _build_entities(self, identity: Identity) -> tuple[Json, cedarpy.Entities]:
        principal = principal_entity(identity, self.compiled.clients.get(principal_id(identity)))
        try:
            return principal, self.compiled.base.with_added_json_str(json.dumps([principal]))
        except ValueError:
            # Claims Cedar cannot hold even after conversion: decide with no attributes (denies
            # whatever needed them).
            bare = {"uid": principal["uid"], "attrs": {}, "parents": principal["parents"]}
            return bare, self.compiled.base.with_added_json_str(json.dumps([bare]))

    def is_allowed(self, identity: Identity, target: Target, *, arguments: Any = None) -> bool:
        """The full decision for one request (context: `{"arguments": ...}`)."""
        principal, entities = self._entities(identity)
        context = {"arguments": cedar_record(arguments) if isinstance(arguments, dict) else {}}
        request = {
            "principal": principal["uid"],
            "action": _uid("Action", target.action),
            "resource": _uid(target.kind, target.name),
            "context": context,
        }
        try:
            result = cedarpy.is_authorized(request, self.compiled.policies, entities)
        except (ValueError, TypeError) as exc:
            log.warning("authz_request_invalid", error=str(exc), target=target.name)
            return False
        return bool(result.allowed)

    def usable(
        self, identity: Identity, *, action: str, kind: str, names: Iterable[str]
    ) -> set[str]:
        """The names of `kind` the caller could use with some arguments (list filtering)."""
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return set()
        principal, entities = self._entities(identity)
        requests = [
            {
                "principal": principal["uid"],
                "action": _uid("Action", action),
                "resource": _uid(kind, name),
                "context": {"arguments": {}},
            }
            for name in wanted
        ]
        try:
            results = cedarpy.is_authorized_batch(requests, self.compiled.policies, entities)
        except (ValueError, TypeError) as exc:
            log.warning("authz_request_invalid", error=str(exc), action=action)
            return set()
        shown: set[str] = set()
        for name, result in zip(wanted, results, strict=True):
            could = result.allowed or (
                bool(result.diagnostics.errors)
                and self._could_permit(principal, action, kind, name)
            )
            if could:
                shown.add(name)
        return shown

    def _could_permit(self, principal: Json, action: str, kind: str, name: str) -> bool:
        """Whether some arguments could permit the call: partial evaluation, context unknown."""
        uid = principal["uid"]
        request = {
            "principal": f"Client::{cedar_string(uid['id'])}",
            "action": f"Action::{cedar_string(action)}",
            "resource": f"{kind}::{cedar_string(name)}",
        }
        entities = self.compiled.base.with_added_json_str(json.dumps([principal]))
        try:
            result = cedarpy.is_authorized_partial(request, self.compiled.policies, entities)
        except (ValueError, TypeError, RuntimeError) as exc:
            log.debug("authz_partial_failed", error=str(exc), resource=name)
            return False
        if result.decision == cedarpy.Decision.Allow:
            return True
        if result.decision != cedarpy.Decision.NoDecision:
            return False
        diagnostics = result.diagnostics
        standing = set(diagnostics.reasons) | set(diagnostics.may_be_determining)
        return bool(standing & self.compiled.permits)


def target_of(call: McpCall, *, tool_name: Callable[[str], str]) -> Target | None:
    """The target of a targeted method, or None when it names none (denied: fail closed)."""
    method = call.method
    params = call.params
    if method == "completion/complete":
        ref = params.get("ref")
        if not isinstance(ref, dict):
            return None
        if ref.get("type") == "ref/prompt" and isinstance(ref.get("name"), str):
            return Target("get_prompt", "Prompt", ref["name"])
        if ref.get("type") == "ref/resource" and isinstance(ref.get("uri"), str):
            return Target("read_resource", "Resource", ref["uri"])
        return None
    action, kind, member = TARGETED[method]
    name = params.get(member)
    if not isinstance(name, str):
        return None
    if kind == "Tool":
        name = tool_name(name)
    return Target(action, kind, name)


def listened_uris(call: McpCall) -> list[str]:
    """The resource URIs a `subscriptions/listen` asks to follow (non-strings are ignored by the
    endpoint too)."""
    notifications = call.params.get("notifications")
    if not isinstance(notifications, dict):
        return []
    uris = notifications.get("resourceSubscriptions")
    if not isinstance(uris, list):
        return []
    return [uri for uri in uris if isinstance(uri, str)]


def forbidden(call: McpCall, target: Target | None) -> Reply:
    if target is None:
        text = f"Forbidden: {call.method} is not permitted"
    else:
        text = f"Forbidden: {target.action} on {target.kind} {target.name!r} is not permitted"
    return Reply(error_response(call.id, FORBIDDEN, text), status=403)


def misspelt_reply(call: McpCall, key: str, expected: str) -> Reply:
    text = (
        f"The argument key {key[:64]!a} differs only in case from {expected!r}, which the "
        f"authorisation policies read; spell it {expected!r}"
    )
    return Reply(error_response(call.id, INVALID_PARAMS, text), status=400)


def _same_name(name: str) -> str:
    return name


class AuthzStep:
    """The authorisation step; `authorizer` is None while authorisation is off, and is replaced
    live when the policies change.

    `tool_name` maps a server's tool name to the name clients see (the tool filter runs first
    and has already mapped the client's name to the server's): policies speak of the tools
    clients see.
    """

    def __init__(
        self,
        authorizer: Authorizer | None,
        *,
        tool_name: Callable[[str], str] = _same_name,
        metrics: AuthzMetrics | None = None,
    ) -> None:
        self.authorizer = authorizer
        self.tool_name = tool_name
        self.metrics = metrics

    def _count(self, decision: str, started: float) -> None:
        if self.metrics is not None:
            self.metrics.decisions.labels(decision).inc()
            self.metrics.duration.observe(time.perf_counter() - started)

    async def __call__(self, call: McpCall, call_next: CallNext) -> Reply:
        authorizer = self.authorizer
        if authorizer is None:
            return await call_next(call)
        method = call.method
        if call.id is None:
            if method in CLIENT_NOTIFICATIONS:
                return await call_next(call)
            # The endpoints refuse other notifications already; one that gets here anyway is
            # refused like a method outside the model, whatever it names.
            self._count("deny", time.perf_counter())
            call.decisions.decision = "deny"
            return forbidden(call, None)
        listing = LISTINGS.get(method)
        if listing is not None:
            reply = await call_next(call.wanting_result())
            started = time.perf_counter()
            self._filter(authorizer, call.identity, listing, reply)
            self._count("allow", started)
            call.decisions.decision = "allow"
            return reply
        if method in OPEN_METHODS:
            return await call_next(call)
        started = time.perf_counter()
        target: Target | None = None
        allowed = False
        if method == "subscriptions/listen":
            allowed = True
            for uri in listened_uris(call):
                target = Target("read_resource", "Resource", uri)
                if not authorizer.is_allowed(call.identity, target):
                    allowed = False
                    break
            else:
                target = None
        elif method in TARGETED or method == "completion/complete":
            misspelt = misspelt_argument(
                call.params.get("arguments"), authorizer.compiled.spellings
            )
            if misspelt is not None:
                self._count("deny", started)
                call.decisions.decision = "deny"
                return misspelt_reply(call, *misspelt)
            target = target_of(call, tool_name=self.tool_name)
            if target is not None:
                if method == "completion/complete":
                    allowed = bool(
                        authorizer.usable(
                            call.identity,
                            action=target.action,
                            kind=target.kind,
                            names=[target.name],
                        )
                    )
                else:
                    allowed = authorizer.is_allowed(
                        call.identity, target, arguments=call.params.get("arguments")
                    )
        decision = "allow" if allowed else "deny"
        self._count(decision, started)
        call.decisions.decision = decision
        if not allowed:
            log.info(
                "authz_denied",
                subject=call.identity.subject,
                method=method,
                target=None if target is None else target.name,
            )
            return forbidden(call, target)
        return await call_next(call)

    def _filter(
        self, authorizer: Authorizer, identity: Identity, listing: Listing, reply: Reply
    ) -> None:
        result = (reply.message or {}).get("result")
        if not isinstance(result, dict) or not isinstance(result.get(listing.key), list):
            return
        entries = [e for e in result[listing.key] if isinstance(e, dict)]
        names: dict[int, str] = {}
        for index, entry in enumerate(entries):
            name = entry.get(listing.field)
            if isinstance(name, str):
                names[index] = self.tool_name(name) if listing.kind == "Tool" else name
        usable = authorizer.usable(
            identity, action=listing.action, kind=listing.kind, names=names.values()
        )
        result[listing.key] = [
            entry for index, entry in enumerate(entries) if names.get(index) in usable
        ]
