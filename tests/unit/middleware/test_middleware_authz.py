"""Cedar authorisation: the entity model, decisions with claims and arguments, list filtering,
fail-closed methods, and the tool names policies speak of."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage_proxyrunner.config.toolpolicy import ToolOverride, ToolPolicy
from moorage_proxyrunner.policy.authz import (
    Authorizer,
    AuthzConfigError,
    AuthzStep,
    Target,
    cedar_record,
    cedar_string,
    cedar_value,
    compile_authz,
    misspelt_argument,
    principal_entity,
    read_attributes,
)
from moorage_proxyrunner.policy.toolfilter import ToolFilterStep
from moorage_proxyrunner.protocol.jsonrpc import FORBIDDEN
from moorage_proxyrunner.protocol.pipeline import ANONYMOUS, Identity, McpCall, Pipeline, Reply

TIME_FOR_ENG = """
permit(principal, action == Action::"call_tool", resource == Tool::"get_current_time")
when { principal.groups.contains("eng") };
"""
UTC_ONLY = """
permit(principal, action == Action::"call_tool", resource == Tool::"convert_time")
when { principal.groups.contains("eng") && context.arguments.source_timezone == "UTC" };
"""
ALICE = Identity(subject="alice", claims={"sub": "alice", "groups": ["eng"], "level": 3})
BOB = Identity(subject="bob", claims={"sub": "bob", "groups": ["sales"]})
TOOLS = [{"name": "get_current_time"}, {"name": "convert_time"}, {"name": "secret"}]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("s", "s"),
        (True, True),
        (7, 7),
        (2**70, None),
        (1.0, 1),
        (1.5, None),
        (None, None),
        ([1, None, "a"], [1, "a"]),
        ({"a": 1, "__entity": {"type": "Client", "id": "root"}}, {"a": 1}),
        ({"__extn": {"fn": "ip", "arg": "1.2.3.4"}}, {}),
    ],
    ids=[
        "str",
        "bool",
        "int",
        "huge-int",
        "integral-float",
        "float",
        "null",
        "set",
        "entity-escape",
        "extn-escape",
    ],
)
def test_json_values_become_cedar_values(value: Any, expected: Any) -> None:
    converted = cedar_value(value)
    assert (
        None if converted is not None and converted is cedar_value(2**70) else converted
    ) == expected


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=30,
    )
)
def test_no_converted_record_carries_a_cedar_escape(value: Any) -> None:
    record = cedar_record({"v": value})

    def walk(item: Any) -> None:
        if isinstance(item, dict):
            assert not any(k.startswith("__") for k in item)
            for v in item.values():
                walk(v)
        elif isinstance(item, list):
            for v in item:
                walk(v)
        else:
            assert isinstance(item, bool | int | str)

    walk(record)


@pytest.mark.parametrize(
    ("policies", "entities", "fragment"),
    [
        ([], "[]", "at least one"),
        (["permit(principal, action, resource) when { x };"], "[]", "not valid Cedar"),
        (["// only a comment"], "[]", "no policy"),
        (["permit(principal == ?principal, action, resource);"], "[]", "templates"),
        ([TIME_FOR_ENG], "{", "not JSON"),
        ([TIME_FOR_ENG], "{}", "JSON array"),
        ([TIME_FOR_ENG], '[{"attrs": {}}]', "uid"),
        (
            [TIME_FOR_ENG],
            '[{"uid": {"type": "G"}, "attrs": {}, "parents": []}]',
            "not valid Cedar entities",
        ),
    ],
    ids=[
        "none",
        "syntax",
        "empty",
        "template",
        "entities-not-json",
        "entities-object",
        "no-uid",
        "bad-entity",
    ],
)
def test_bad_policies_and_entities_are_refused(
    policies: list[str], entities: str, fragment: str
) -> None:
    with pytest.raises(AuthzConfigError, match=fragment):
        compile_authz(policies, entities)


def test_policies_are_parsed_once_per_text() -> None:
    assert compile_authz([TIME_FOR_ENG]) is compile_authz([TIME_FOR_ENG])
    assert compile_authz([TIME_FOR_ENG]) is not compile_authz([TIME_FOR_ENG, UTC_ONLY])


def test_claims_are_the_principals_attributes_over_configured_ones() -> None:
    configured = {
        "uid": {"type": "Client", "id": "alice"},
        "attrs": {"team": "core", "groups": ["old"]},
        "parents": [{"type": "Group", "id": "admins"}],
    }
    entity = principal_entity(ALICE, configured)
    assert entity == {
        "uid": {"type": "Client", "id": "alice"},
        "attrs": {"team": "core", "groups": ["eng"], "sub": "alice", "level": 3},
        "parents": [{"type": "Group", "id": "admins"}],
    }
    assert principal_entity(ANONYMOUS, None)["uid"] == {"type": "Client", "id": ""}


@pytest.mark.parametrize(
    ("identity", "target", "arguments", "allowed"),
    [
        (ALICE, "get_current_time", None, True),
        (BOB, "get_current_time", None, False),
        (ANONYMOUS, "get_current_time", None, False),
        (ALICE, "convert_time", {"source_timezone": "UTC"}, True),
        (ALICE, "convert_time", {"source_timezone": "Europe/Paris"}, False),
        (ALICE, "convert_time", {}, False),
        (ALICE, "convert_time", {"source_timezone": {"__extn": {"fn": "ip", "arg": "UTC"}}}, False),
        (BOB, "convert_time", {"source_timezone": "UTC"}, False),
        (ALICE, "secret", None, False),
    ],
    ids=[
        "group",
        "other-group",
        "anonymous",
        "utc",
        "paris",
        "no-args",
        "escape",
        "utc-other-group",
        "unlisted",
    ],
)
def test_calls_are_decided_on_claims_and_arguments(
    identity: Identity, target: str, arguments: Any, allowed: bool
) -> None:
    authorizer = Authorizer(compile_authz([TIME_FOR_ENG, UTC_ONLY]))
    decided = authorizer.is_allowed(
        identity, Target("call_tool", "Tool", target), arguments=arguments
    )
    assert decided is allowed


def test_configured_entities_give_groups_of_tools_and_principals() -> None:
    entities = json.dumps(
        [
            {
                "uid": {"type": "Tool", "id": "get_current_time"},
                "attrs": {},
                "parents": [{"type": "ToolGroup", "id": "safe"}],
            },
            {"uid": {"type": "ToolGroup", "id": "safe"}, "attrs": {}, "parents": []},
            {
                "uid": {"type": "Client", "id": "bob"},
                "attrs": {},
                "parents": [{"type": "Group", "id": "ops"}],
            },
        ]
    )
    policy = 'permit(principal in Group::"ops", action == Action::"call_tool", resource in ToolGroup::"safe");'
    authorizer = Authorizer(compile_authz([policy], entities))
    assert authorizer.is_allowed(BOB, Target("call_tool", "Tool", "get_current_time"))
    assert not authorizer.is_allowed(BOB, Target("call_tool", "Tool", "convert_time"))
    assert not authorizer.is_allowed(ALICE, Target("call_tool", "Tool", "get_current_time"))


def test_lists_keep_what_some_arguments_could_permit() -> None:
    authorizer = Authorizer(compile_authz([TIME_FOR_ENG, UTC_ONLY]))
    names = [t["name"] for t in TOOLS]
    assert authorizer.usable(ALICE, action="call_tool", kind="Tool", names=names) == {
        "get_current_time",
        "convert_time",
    }
    assert authorizer.usable(BOB, action="call_tool", kind="Tool", names=names) == set()


def test_a_forbid_on_arguments_does_not_hide_a_permitted_tool() -> None:
    policies = [
        'permit(principal, action == Action::"call_tool", resource == Tool::"echo");',
        'forbid(principal, action, resource == Tool::"echo") when { context.arguments.text == "x" };',
    ]
    authorizer = Authorizer(compile_authz(policies))
    assert authorizer.usable(BOB, action="call_tool", kind="Tool", names=["echo"]) == {"echo"}
    assert not authorizer.is_allowed(
        BOB, Target("call_tool", "Tool", "echo"), arguments={"text": "x"}
    )
    assert authorizer.is_allowed(BOB, Target("call_tool", "Tool", "echo"), arguments={"text": "y"})


def test_odd_names_are_quoted_for_partial_evaluation() -> None:
    assert cedar_string('a"b\\c\n') == '"a\\"b\\\\c\\u{a}"'
    authorizer = Authorizer(compile_authz([UTC_ONLY]))
    odd = Identity(subject='x"y', claims={"groups": ["eng"]})
    names = ["convert_time", 'q"\n']
    assert authorizer.usable(odd, action="call_tool", kind="Tool", names=names) == {"convert_time"}
    # Cedar refuses ids it cannot normalise in surface syntax: such a caller is shown nothing.
    unprintable = Identity(subject="x\ny", claims={"groups": ["eng"]})
    assert authorizer.usable(unprintable, action="call_tool", kind="Tool", names=names) == set()


def call(method: str, params: dict[str, Any] | None = None, identity: Identity = ALICE) -> McpCall:
    return McpCall(
        {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}, identity, "legacy"
    )


async def backend(c: McpCall) -> Reply:
    if c.method == "tools/list":
        return Reply({"jsonrpc": "2.0", "id": c.id, "result": {"tools": [dict(t) for t in TOOLS]}})
    if c.method == "prompts/list":
        return Reply(
            {"jsonrpc": "2.0", "id": c.id, "result": {"prompts": [{"name": "p"}, {"name": "q"}]}}
        )
    return Reply({"jsonrpc": "2.0", "id": c.id, "result": {"reached": c.params}})


@pytest.mark.parametrize(
    ("method", "params", "status"),
    [
        ("tools/call", {"name": "get_current_time"}, 200),
        ("tools/call", {"name": "secret"}, 403),
        ("tools/call", {}, 403),
        ("prompts/get", {"name": "p"}, 200),
        ("prompts/get", {"name": "q"}, 403),
        ("resources/read", {"uri": "file:///ok"}, 200),
        ("resources/read", {"uri": "file:///etc/shadow"}, 403),
        ("resources/subscribe", {"uri": "file:///etc/shadow"}, 403),
        ("completion/complete", {"ref": {"type": "ref/prompt", "name": "p"}}, 200),
        ("completion/complete", {"ref": {"type": "ref/prompt", "name": "q"}}, 403),
        ("completion/complete", {"ref": {"type": "ref/other"}}, 403),
        ("ping", {}, 200),
        ("resources/templates/list", {}, 200),
        ("tasks/result", {"taskId": "t"}, 403),
        ("x-vendor/anything", {}, 403),
    ],
    ids=lambda v: str(v) if not isinstance(v, dict) else "",
)
async def test_the_step_decides_every_method_failing_closed(
    method: str, params: dict[str, Any], status: int
) -> None:
    policies = [
        TIME_FOR_ENG,
        'permit(principal, action == Action::"get_prompt", resource == Prompt::"p");',
        'permit(principal, action == Action::"read_resource", resource == Resource::"file:///ok");',
    ]
    chain = Pipeline([AuthzStep(Authorizer(compile_authz(policies)))]).bind(backend)
    reply = await chain(call(method, params))
    assert reply.status == status
    if status == 403:
        assert reply.message is not None
        assert reply.message["error"]["code"] == FORBIDDEN
        assert reply.message["id"] == 1


async def test_lists_are_filtered_to_what_the_caller_may_use() -> None:
    policies = [
        TIME_FOR_ENG,
        'permit(principal, action == Action::"get_prompt", resource == Prompt::"q");',
    ]
    chain = Pipeline([AuthzStep(Authorizer(compile_authz(policies)))]).bind(backend)
    tools = await chain(call("tools/list"))
    assert tools.message["result"]["tools"] == [{"name": "get_current_time"}]  # type: ignore[index]
    assert (await chain(call("tools/list", identity=BOB))).message["result"]["tools"] == []  # type: ignore[index]
    prompts = await chain(call("prompts/list", identity=BOB))
    assert prompts.message["result"]["prompts"] == [{"name": "q"}]  # type: ignore[index]


async def test_policies_speak_of_the_names_clients_see_and_renames_smuggle_nothing() -> None:
    filter_step = ToolFilterStep(
        ToolPolicy(overrides={"get_current_time": ToolOverride(name="now")})
    )
    step = AuthzStep(
        Authorizer(
            compile_authz(
                ['permit(principal, action == Action::"call_tool", resource == Tool::"now");']
            )
        ),
        tool_name=filter_step.policy.client_name,
    )
    seen: list[str] = []

    async def server(c: McpCall) -> Reply:
        if c.method == "tools/list":
            return await backend(c)
        seen.append(c.params["name"])
        known = {"get_current_time", "convert_time", "secret"}
        if c.params["name"] not in known:
            return Reply(
                {
                    "jsonrpc": "2.0",
                    "id": c.id,
                    "error": {"code": -32602, "message": f"Unknown tool: {c.params['name']}"},
                }
            )
        return Reply({"jsonrpc": "2.0", "id": c.id, "result": {"content": []}})

    chain = Pipeline([filter_step, step]).bind(server)
    listed = await chain(call("tools/list", identity=BOB))
    assert listed.message["result"]["tools"] == [{"name": "now"}]  # type: ignore[index]
    assert (await chain(call("tools/call", {"name": "now"}, identity=BOB))).status == 200
    assert seen == ["get_current_time"]
    old_name = await chain(call("tools/call", {"name": "get_current_time"}, identity=BOB))
    unknown = await chain(call("tools/call", {"name": "nope"}, identity=BOB))
    assert old_name.status == unknown.status == 403
    assert old_name.message["error"]["message"] == unknown.message["error"]["message"].replace(
        "nope", "get_current_time"
    )  # type: ignore[index]
    assert seen == ["get_current_time"], "denied calls never reach the server"


async def test_resource_templates_are_filtered_on_their_uri_template() -> None:
    policies = [
        'permit(principal, action == Action::"read_resource", '
        'resource == Resource::"file:///logs/{name}");',
    ]
    templates = [
        {"uriTemplate": "file:///logs/{name}", "name": "logs"},
        {"uriTemplate": "file:///secrets/{name}", "name": "secrets"},
        {"name": "no template"},
    ]

    async def server(c: McpCall) -> Reply:
        result = {"resourceTemplates": [dict(t) for t in templates]}
        return Reply({"jsonrpc": "2.0", "id": c.id, "result": result})

    chain = Pipeline([AuthzStep(Authorizer(compile_authz(policies)))]).bind(server)
    listed = await chain(call("resources/templates/list"))
    assert listed.message["result"]["resourceTemplates"] == [templates[0]]  # type: ignore[index]


@pytest.mark.parametrize(
    ("uris", "status"),
    [
        ([], 200),
        (["file:///ok"], 200),
        (["file:///ok", "file:///etc/shadow"], 403),
        (["file:///etc/shadow"], 403),
    ],
    ids=["none", "readable", "one-unreadable", "unreadable"],
)
async def test_every_resource_a_listen_follows_is_decided_as_a_read(
    uris: list[str], status: int
) -> None:
    policies = [
        'permit(principal, action == Action::"read_resource", resource == Resource::"file:///ok");',
    ]
    chain = Pipeline([AuthzStep(Authorizer(compile_authz(policies)))]).bind(backend)
    params = {"notifications": {"toolsListChanged": True, "resourceSubscriptions": uris}}
    reply = await chain(call("subscriptions/listen", params))
    assert reply.status == status
    if status == 403:
        assert reply.message is not None
        assert reply.message["error"]["code"] == FORBIDDEN
        assert "file:///etc/shadow" in reply.message["error"]["message"]


@pytest.mark.parametrize(
    ("policies", "fragment"),
    [
        pytest.param(
            [
                "permit(principal, action, resource) when { "
                + "(" * 700
                + "true"
                + ")" * 700
                + " };"
            ],
            "authz.policies[0]: nests brackets 701 deep",
            id="deep-entry",
        ),
        pytest.param(
            [
                "permit(principal, action, resource) when { " + "(" * 20,
                "(" * 20 + "true" + ")" * 40 + " };",
            ],
            "authz.policies: an entry leaves a bracket or a string open",
            id="deep-only-when-joined",
        ),
    ],
)
def test_compiling_bounds_the_policies_before_cedar_parses_them(
    policies: list[str], fragment: str
) -> None:
    with pytest.raises(AuthzConfigError) as caught:
        compile_authz(policies)
    assert str(caught.value).startswith(fragment)


def test_entities_too_deep_for_json_are_a_config_error() -> None:
    deep = '[{"uid": {"type": "G", "id": "g"}, "attrs": {"a": ' + "[" * 5_000 + "]" * 5_000 + "}}]"
    with pytest.raises(AuthzConfigError, match="entities_json: nested too deeply"):
        compile_authz(["permit(principal, action, resource);"], deep)


def test_the_attributes_policies_read_are_collected_by_their_folded_names() -> None:
    compiled = compile_authz(
        [
            "forbid(principal, action, resource) when { context.arguments has path && "
            'context.arguments.path like "/etc/*" };',
            'permit(principal, action, resource) when { context.arguments["Deep"].x == '
            '{Mode: 1, "b c": 2} && principal has groups };',
            "permit(principal, action, resource) when { context has Path };",
        ]
    )
    assert read_attributes({"conditions": [{".": {"attr": "a"}}, [{"has": {"attr": "b"}}]]}) == {
        "a",
        "b",
    }
    spellings = compiled.spellings
    assert spellings["path"] == {"path", "Path"}
    assert spellings["deep"] == {"Deep"}
    assert spellings["x"] == {"x"}
    assert spellings["mode"] == {"Mode"}
    assert spellings["b c"] == {"b c"}
    assert spellings["groups"] == {"groups"}
    assert spellings["arguments"] == {"arguments"}


@pytest.mark.parametrize(
    ("arguments", "found"),
    [
        ({"path": "/etc/shadow"}, None),
        ({"Path": "/etc/shadow"}, ("Path", "path")),
        ({"PATH": 1, "other": 2}, ("PATH", "path")),
        ({"deep": [{"x": {"Path": "/etc"}}]}, ("Path", "path")),
        ({"\u017fource": "UTC"}, ("\u017fource", "source")),
        ({"Other": 1, "Name": 2}, None),
        ("not an object", None),
    ],
    ids=["exact", "capital", "upper", "nested", "long-s", "unread-keys", "not-an-object"],
)
def test_argument_keys_must_be_spelt_as_the_policies_read_them(
    arguments: Any, found: tuple[str, str] | None
) -> None:
    spellings = {"path": frozenset({"path"}), "source": frozenset({"source"})}
    assert misspelt_argument(arguments, spellings) == found
    assert misspelt_argument(arguments, {}) is None


async def test_a_call_with_a_misspelt_policy_attribute_is_refused_before_cedar() -> None:
    policies = [
        "permit(principal, action, resource);",
        "forbid(principal, action, resource) when { context.arguments has path && "
        'context.arguments.path like "/etc/*" };',
    ]
    chain = Pipeline([AuthzStep(Authorizer(compile_authz(policies)))]).bind(backend)
    for method in ("tools/call", "prompts/get"):
        refused = await chain(call(method, {"name": "t", "arguments": {"Path": "/etc/shadow"}}))
        assert refused.status == 400
        assert refused.message is not None
        assert refused.message["error"]["code"] == -32602
        assert refused.message["error"]["message"] == (
            "The argument key 'Path' differs only in case from 'path', which the authorisation "
            "policies read; spell it 'path'"
        )
    denied = await chain(call("tools/call", {"name": "t", "arguments": {"path": "/etc/shadow"}}))
    assert denied.status == 403
    allowed = await chain(call("tools/call", {"name": "t", "arguments": {"PATHS": "/etc"}}))
    assert allowed.status == 200
