"""Tool filter and override: hidden and renamed-away tools look exactly like unknown ones."""

from __future__ import annotations

from typing import Any

import pytest

from moorage_proxyrunner.config.toolpolicy import ToolOverride, ToolPolicy
from moorage_proxyrunner.policy.toolfilter import ToolFilterStep
from moorage_proxyrunner.protocol.pipeline import ANONYMOUS, McpCall, Pipeline, Reply

TOOLS = [
    {"name": "read", "description": "Read a file"},
    {"name": "write", "description": "Write a file"},
    {"name": "delete", "description": "Delete a file"},
]
POLICY = ToolPolicy(
    allowed=frozenset({"read", "save"}),
    overrides={"write": ToolOverride(name="save", description="Save a file")},
)


def test_a_listing_shows_allowed_tools_under_their_new_names() -> None:
    assert POLICY.present(TOOLS) == [
        {"name": "read", "description": "Read a file"},
        {"name": "save", "description": "Save a file"},
    ]


@pytest.mark.parametrize(
    ("client_name", "server_name"),
    [("read", "read"), ("save", "write"), ("write", None), ("delete", None), ("nope", None)],
    ids=["kept", "renamed", "renamed-away", "hidden", "unknown"],
)
def test_client_names_map_back_to_server_names(client_name: str, server_name: str | None) -> None:
    assert POLICY.server_name(client_name) == server_name


def test_an_empty_policy_shows_everything() -> None:
    policy = ToolPolicy()
    assert not policy.is_active
    assert policy.present(TOOLS) == TOOLS
    assert policy.server_name("delete") == "delete"


def call(method: str, params: dict[str, Any]) -> McpCall:
    return McpCall(
        {"jsonrpc": "2.0", "id": 9, "method": method, "params": params}, ANONYMOUS, "legacy"
    )


async def test_the_step_renames_calls_and_asks_about_hidden_ones_under_a_stand_in() -> None:
    seen: list[dict[str, Any]] = []
    known = {"read", "write", "delete"}

    async def backend(c: McpCall) -> Reply:
        seen.append(c.message)
        if c.method == "tools/list":
            return Reply(
                {"jsonrpc": "2.0", "id": c.id, "result": {"tools": [dict(t) for t in TOOLS]}}
            )
        name = c.params["name"]
        if name not in known:
            return Reply(
                {
                    "jsonrpc": "2.0",
                    "id": c.id,
                    "error": {"code": -32602, "message": f"Unknown tool: {name}"},
                }
            )
        return Reply({"jsonrpc": "2.0", "id": c.id, "result": {"content": []}})

    chain = Pipeline([ToolFilterStep(POLICY)]).bind(backend)
    listed = await chain(call("tools/list", {}))
    assert [t["name"] for t in listed.message["result"]["tools"]] == ["read", "save"]  # type: ignore[index]
    await chain(call("tools/call", {"name": "save", "arguments": {}}))
    assert seen[-1]["params"]["name"] == "write"
    hidden = await chain(call("tools/call", {"name": "delete"}))
    unknown = await chain(call("tools/call", {"name": "nope"}))
    stand_ins = [m["params"]["name"] for m in seen[2:]]
    assert all(n.startswith("moorage-unknown-") for n in stand_ins), "hidden names never reach it"
    assert hidden.message == {
        "jsonrpc": "2.0",
        "id": 9,
        "error": {"code": -32602, "message": "Unknown tool: delete"},
    }
    assert unknown.message == {
        "jsonrpc": "2.0",
        "id": 9,
        "error": {"code": -32602, "message": "Unknown tool: nope"},
    }


async def test_the_policy_can_be_swapped_live() -> None:
    step = ToolFilterStep(ToolPolicy())

    async def backend(c: McpCall) -> Reply:
        return Reply({"jsonrpc": "2.0", "id": c.id, "result": {"tools": [dict(t) for t in TOOLS]}})

    chain = Pipeline([step]).bind(backend)
    assert len((await chain(call("tools/list", {}))).message["result"]["tools"]) == 3  # type: ignore[index]
    step.policy = ToolPolicy(allowed=frozenset({"read"}))
    assert len((await chain(call("tools/list", {}))).message["result"]["tools"]) == 1  # type: ignore[index]


@pytest.mark.parametrize("policy", [POLICY, ToolPolicy()], ids=["active", "empty"])
@pytest.mark.parametrize(
    "params",
    [{}, {"name": 1}, {"name": None}, {"Name": "delete"}],
    ids=["missing", "number", "null", "other-case"],
)
async def test_a_call_without_a_string_name_is_refused_not_passed_on(
    policy: ToolPolicy, params: dict[str, Any]
) -> None:
    reached: list[McpCall] = []

    async def backend(c: McpCall) -> Reply:
        reached.append(c)
        return Reply({"jsonrpc": "2.0", "id": c.id, "result": {}})

    reply = await Pipeline([ToolFilterStep(policy)]).bind(backend)(call("tools/call", params))
    assert reached == []
    assert reply.status == 400
    assert reply.message is not None
    assert reply.message["id"] == 9
    assert reply.message["error"]["code"] == -32602
    assert reply.message["error"]["message"] == 'tools/call needs "name": a string'
