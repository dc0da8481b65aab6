"""Property: what reaches the backend was audited and authorised exactly as it is sent.

Generated client messages (duplicate and case-variant keys at any depth, odd ids, notifications,
nested arguments, unicode with lone surrogates) go through the proxy's own intake
(`check_client_message`) and the real middleware pipeline (`Middleware`: audit, tool filter and
override, Cedar authorisation, the audit gate) into a recording backend that encodes what it is
handed as the backends do. For every message:

- a message with ambiguous keys or a lone surrogate never enters the pipeline;
- whatever is forwarded was recorded by the audit gate first, under the client's id, naming the
  forwarded target; the request's one audit record names the client's method, target and id;
- a forwarded call is the one Cedar allowed: the same tool (as the client names it) and the same
  arguments;
- with Cedar on, nothing outside the methods the model knows is forwarded;
- a decoder that folds key case with the last key winning (Go's `encoding/json`) reads from the
  forwarded bytes exactly what the proxy read, looked up by the exact names the proxy uses (its
  own side is never folded): the method, the id, the tool name the filter saw, the URI, and the
  argument attributes the policies read; a forwarded response carries no method or params.

The generator also writes single case-variant keys (`Method`, `ID`, `Name`, `Arguments`,
`Danger`), response-shaped messages carrying a request's members, and runs with and without
Cedar (the tool filter alone must hold too).
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from moorage_api.runconfig import RunConfigAuthz
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.config.toolpolicy import ToolOverride, ToolPolicy
from moorage_proxyrunner.front.responding import Refusal, check_client_message
from moorage_proxyrunner.policy.audit import AuditWriter
from moorage_proxyrunner.policy.authz import (
    CLIENT_NOTIFICATIONS,
    LISTINGS,
    OPEN_METHODS,
    TARGETED,
    Authorizer,
    Target,
    cedar_record,
)
from moorage_proxyrunner.policy.chain import Middleware
from moorage_proxyrunner.protocol.jsonrpc import Kind, encode
from moorage_proxyrunner.protocol.pipeline import Identity, McpCall, Reply

POLICIES = [
    'permit(principal, action == Action::"call_tool", resource == Tool::"echo") when '
    '{ context.arguments has mode && context.arguments.mode == "safe" };',
    'permit(principal, action == Action::"call_tool", resource == Tool::"public");',
    'permit(principal, action == Action::"read_resource", resource);',
    'permit(principal, action == Action::"get_prompt", resource) unless '
    '{ resource == Prompt::"secret" };',
    "forbid(principal, action, resource) when { context.arguments has danger };",
]
POLICY = ToolPolicy(
    allowed=frozenset({"echo", "public", "secret"}),
    overrides={"srv_echo": ToolOverride(name="echo")},
)
KNOWN_METHODS = (
    OPEN_METHODS
    | TARGETED.keys()
    | LISTINGS.keys()
    | {"completion/complete"}
    | CLIENT_NOTIFICATIONS
)
IDENTITIES = [Identity(), Identity(subject="alice", claims={"sub": "alice", "groups": ["a"]})]


class RecordingAuthorizer(Authorizer):
    """The real decisions, each noted with what it was asked."""

    def __init__(self, authorizer: Authorizer) -> None:
        super().__init__(authorizer.compiled)
        self.asked: list[tuple[Target, Any, bool]] = []

    def is_allowed(self, identity: Identity, target: Target, *, arguments: Any = None) -> bool:
        allowed = super().is_allowed(identity, target, arguments=arguments)
        self.asked.append((target, arguments, allowed))
        return allowed


MIDDLEWARE = Middleware(
    ProxyRunnerSettings(audit=True, authz=RunConfigAuthz(policies=POLICIES), tool_policy=POLICY),
    registry=CollectorRegistry(),
)
assert MIDDLEWARE.authz_step.authorizer is not None
AUTHORIZER = RecordingAuthorizer(MIDDLEWARE.authz_step.authorizer)
MIDDLEWARE.authz_step.authorizer = AUTHORIZER
FILTER_ONLY = Middleware(
    ProxyRunnerSettings(audit=True, tool_policy=POLICY), registry=CollectorRegistry()
)
POLICY_ATTRIBUTES = ("mode", "danger")
"""The argument attributes POLICIES read (written out here, apart from the proxy's reading)."""


# -- raw JSON with whatever keys a client may send ------------------------------------------------

NAMES = st.sampled_from(["safe", "echo", "public", "secret", "srv_echo", "hidden", "", "x"])
PLAIN_TEXT = NAMES | st.text(alphabet=st.sampled_from("az/ é😀"), max_size=5)
ODD_TEXT = PLAIN_TEXT | st.text(
    alphabet=st.sampled_from('aZß\u017fKk\u212a\x00"\\\ud800\udfff'), min_size=1, max_size=4
)
PLAIN_KEYS = st.sampled_from(["mode", "danger", "path", "deep", "n", "é"])
ODD_KEYS = PLAIN_KEYS | st.sampled_from(
    ["Mode", "MODE", "Danger", "Name", "s", "\u017f", "k", "K", "\u212a", "\ud800"]
)


def dump(value: Any) -> str:
    return json.dumps(value)  # ASCII, so a lone surrogate travels as an escape, as it would


def raw_object(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{dump(k)}:{v}" for k, v in pairs) + "}"


def leaves(text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), text
    )
    return scalars.map(dump)


@st.composite
def pairs_of(
    draw: st.DrawFn, keys: st.SearchStrategy[str], values: st.SearchStrategy[str], *, odd: bool
) -> list[tuple[str, str]]:
    """An object's members: distinct keys, and when `odd` maybe one repeated or in other case."""
    pairs = list(draw(st.dictionaries(keys, values, max_size=4)).items())
    if odd and pairs and draw(st.booleans()):
        key, _ = draw(st.sampled_from(pairs))
        twin = draw(st.sampled_from([key, key.upper(), key.title(), key.swapcase()]))
        pairs.insert(draw(st.integers(0, len(pairs))), (twin, draw(values)))
    return pairs


def values(keys: st.SearchStrategy[str], text: st.SearchStrategy[str], *, odd: bool) -> Any:
    return st.recursive(
        leaves(text),
        lambda inner: (
            st.lists(inner, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]")
            | pairs_of(keys, inner, odd=odd).map(raw_object)
        ),
        max_leaves=8,
    )


PLAIN = (PLAIN_KEYS, PLAIN_TEXT, values(PLAIN_KEYS, PLAIN_TEXT, odd=False))
ODD = (ODD_KEYS, ODD_TEXT, values(ODD_KEYS, ODD_TEXT, odd=True))
METHODS = st.sampled_from(
    [
        "tools/call",
        "tools/call",
        "tools/call",
        "tools/list",
        "ping",
        "prompts/get",
        "resources/read",
        "completion/complete",
        "initialize",
        "notifications/cancelled",
        "notifications/initialized",
        "notifications/progress",
        "notifications/message",
        "notifications/tools/list_changed",
        "Tools/Call",
        "sampling/createMessage",
    ]
)


def spelt(draw: st.DrawFn, key: str, *, odd: bool) -> str:
    """`key`, or when `odd` sometimes a single case variant of it (no exact twin beside it)."""
    if not odd or draw(st.integers(0, 3)) > 0:
        return key
    return draw(st.sampled_from([key.upper(), key.title(), key.swapcase(), key.capitalize()]))


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """Half plain messages, half with ambiguous or case-variant keys, lone surrogates, odd ids
    and response shapes in them."""
    odd = draw(st.booleans())
    keys, text, value = ODD if odd else PLAIN
    arguments = draw(pairs_of(keys, value, odd=odd))
    if draw(st.booleans()) and all(key.casefold() != "mode" for key, _ in arguments):
        arguments.append((spelt(draw, "mode", odd=odd), dump("safe")))
    if odd and draw(st.booleans()) and all(key.casefold() != "danger" for key, _ in arguments):
        arguments.append((spelt(draw, "danger", odd=odd), dump(True)))
    params: list[tuple[str, str]] = [
        (spelt(draw, "name", odd=odd), dump(draw(NAMES if not odd else text))),
        (spelt(draw, "uri", odd=odd), dump(draw(text))),
        (spelt(draw, "arguments", odd=odd), raw_object(draw(st.permutations(arguments)))),
    ]
    if odd and draw(st.booleans()):
        params.append((draw(st.sampled_from(["Name", "NAME", "name", "URI", "Arguments"])), "1"))
    params_object = raw_object(draw(st.permutations(params)))
    ids = st.integers(-(2**63), 2**63) | text
    if odd:
        ids |= st.none() | st.booleans() | st.floats(allow_nan=False)
    if odd and draw(st.integers(0, 3)) == 0:
        # Response-shaped: what a request says, hidden beside a result or an error.
        answer = draw(st.sampled_from(['{"result":{}}', '{"error":{"code":1,"message":"m"}}']))
        [(member, body)] = json.loads(answer).items()
        top = [("jsonrpc", dump("2.0")), ("id", dump(draw(ids))), (member, dump(body))]
        top.append((draw(st.sampled_from(["Method", "METHOD", "method"])), dump(draw(METHODS))))
        if draw(st.booleans()):
            top.append((draw(st.sampled_from(["Params", "params"])), params_object))
        return raw_object(draw(st.permutations(top))).encode()
    top = [
        ("jsonrpc", dump("2.0")),
        (spelt(draw, "method", odd=odd), dump(draw(METHODS))),
        (spelt(draw, "params", odd=odd), params_object),
    ]
    if draw(st.sampled_from([True, True, False])):
        top.append((spelt(draw, "id", odd=odd), dump(draw(ids))))
    if odd and draw(st.booleans()):
        extra = st.sampled_from(["Method", "ID", "id", "method", "Params", "jsonrpc"])
        top.append((draw(extra), draw(leaves(text))))
    return raw_object(draw(st.permutations(top))).encode()


# -- an oracle written apart from the proxy's parser ----------------------------------------------


def folded_last_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """How a case-insensitive decoder whose last key wins sees an object (Go's does)."""
    return {key.casefold(): value for key, value in pairs}


def is_ambiguous(raw: bytes) -> bool:
    found: list[bool] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({key.casefold() for key, _ in pairs}) < len(pairs):
            found.append(True)
        return dict(pairs)

    json.loads(raw, object_pairs_hook=hook)
    return bool(found)


def has_surrogate(value: Any) -> bool:
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def audit_records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def through_pipeline(
    body: dict[str, Any], identity: Identity, stream: io.StringIO, middleware: Middleware
) -> tuple[list[tuple[bytes, list[dict[str, Any]]]], Reply]:
    forwarded: list[tuple[bytes, list[dict[str, Any]]]] = []

    async def backend(call: McpCall) -> Reply:
        forwarded.append((encode(call.message), audit_records(stream)))
        if call.id is None:
            return Reply(None, status=202)
        call.message["id"] = "backend-1"  # as the stdio bridge does, in place
        result: dict[str, Any] = {"tools": [{"name": "srv_echo"}, {"name": "secret"}]}
        return Reply({"jsonrpc": "2.0", "id": "backend-1", "result": result})

    reply = await middleware.pipeline.bind(backend)(McpCall(body, identity, "legacy"))
    return forwarded, reply


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    raw=messages(),
    identity=st.sampled_from(IDENTITIES),
    modern=st.booleans(),
    with_cedar=st.booleans(),
)
def test_what_is_forwarded_was_audited_and_authorised_as_sent(
    raw: bytes, identity: Identity, modern: bool, with_cedar: bool
) -> None:
    checked = check_client_message(raw, modern=modern)
    decoded = json.loads(raw)
    if is_ambiguous(raw) or has_surrogate(decoded):
        assert isinstance(checked, Refusal)
        event("refused at intake: ambiguous or not Unicode")
        return
    if isinstance(checked, Refusal):
        event("refused at intake")
        return
    if checked.kind is Kind.RESPONSE:
        # Forwarded as it is, unaudited (an answer to the server's own request): a server must
        # not read a request into it.
        go_view = json.loads(encode(checked.body), object_pairs_hook=folded_last_wins)
        assert "method" not in go_view
        assert "params" not in go_view
        event("forwarded response")
        return
    middleware = MIDDLEWARE if with_cedar else FILTER_ONLY
    client_id = checked.id
    client_method = checked.method
    client_name = checked.params.get("name")
    stream = io.StringIO()
    middleware.audit_step.writer = AuditWriter(stream)
    AUTHORIZER.asked.clear()
    forwarded, reply = asyncio.run(through_pipeline(checked.body, identity, stream, middleware))

    records = audit_records(stream)
    [final] = [r for r in records if r["event"] == "mcp_audit"]
    assert (final["method"], final["request_id"]) == (client_method, client_id)
    assert final["forwarded"] is bool(forwarded)
    if client_method in ("tools/call", "prompts/get"):
        assert final["target"] == (client_name if isinstance(client_name, str) else None)
    if checked.kind is Kind.NOTIFICATION:
        # The intake let it in, so it is one the protocol lets clients send: nothing refuses it.
        assert client_method in CLIENT_NOTIFICATIONS
        assert forwarded, reply
    if not forwarded:
        assert reply.message is not None
        assert "error" in reply.message
        event(f"refused in the pipeline: {checked.method}")
        return

    [(sent_bytes, audited_before)] = forwarded
    event(f"forwarded {checked.kind.value} {checked.method} (cedar: {with_cedar})")
    sent = json.loads(sent_bytes)
    assert not is_ambiguous(sent_bytes)
    if with_cedar:
        assert sent["method"] in KNOWN_METHODS  # fail closed: the model's methods only
    assert sent.get("id") == client_id
    forward = audited_before[-1]
    assert forward["event"] == "mcp_audit_forward"
    assert (forward["request_id"], forward["forwarded_method"]) == (client_id, sent["method"])

    # What a case-folding, last-key-wins decoder reads, against the proxy's exact reading.
    go_view = json.loads(sent_bytes, object_pairs_hook=folded_last_wins)
    assert go_view.get("method") == sent.get("method")
    assert go_view.get("id") == sent.get("id")
    assert ("params" in go_view) == ("params" in sent)
    go_params = go_view.get("params") if isinstance(go_view.get("params"), dict) else {}
    sent_params = sent.get("params") or {}
    for member in ("name", "uri"):
        assert go_params.get(member) == sent_params.get(member), member
    if sent["method"] in ("tools/call", "prompts/get", "resources/read"):
        member = "uri" if sent["method"] == "resources/read" else "name"
        assert forward["forwarded_target"] == sent_params.get(member)
    if sent["method"] == "tools/call":
        # The tool filter saw `name` as a string, and that is what the server reads.
        assert isinstance(sent_params.get("name"), str)
        assert ("arguments" in go_params) == ("arguments" in sent_params)
        if with_cedar:
            target, arguments, allowed = AUTHORIZER.asked[-1]
            assert allowed
            assert target.name == POLICY.client_name(sent_params["name"])
            assert target.name == client_name
            assert cedar_record(arguments) == cedar_record(sent_params.get("arguments"))
            seen_by_cedar = arguments if isinstance(arguments, dict) else {}
            go_arguments = go_params.get("arguments")
            go_arguments = go_arguments if isinstance(go_arguments, dict) else {}
            for attr in POLICY_ATTRIBUTES:
                assert (attr in go_arguments) == (attr in seen_by_cedar), attr
                cedar_side = seen_by_cedar.get(attr)
                if not isinstance(cedar_side, dict | list):
                    assert go_arguments.get(attr) == cedar_side, attr
