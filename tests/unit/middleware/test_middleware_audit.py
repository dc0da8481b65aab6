"""Audit records: one JSON line per request through the pipeline, with what the steps decided."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from moorage_proxyrunner.audit import AuditStep, AuditWriter
from moorage_proxyrunner.authz import Authorizer, AuthzStep, compile_authz
from moorage_proxyrunner.pipeline import Identity, McpCall, Pipeline, Reply
from moorage_proxyrunner.toolfilter import ToolFilterStep, ToolPolicy

ALICE = Identity(subject="alice", claims={"sub": "alice"})


def call(method: str, params: dict[str, Any]) -> McpCall:
    return McpCall(
        {"jsonrpc": "2.0", "id": 4, "method": method, "params": params}, ALICE, "legacy", "s" * 20
    )


async def backend(c: McpCall) -> Reply:
    if c.params.get("name") == "fails":
        return Reply({"jsonrpc": "2.0", "id": c.id, "result": {"isError": True, "content": []}})
    if c.params.get("name", "").startswith("moorage-unknown-"):
        return Reply({"jsonrpc": "2.0", "id": c.id, "error": {"code": -32602, "message": "no"}})
    return Reply({"jsonrpc": "2.0", "id": c.id, "result": {"content": []}})


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"name": "echo"}, {"decision": "allow", "status": 200, "outcome": "ok", "target": "echo"}),
        ({"name": "fails"}, {"decision": "allow", "outcome": "tool_error"}),
        (
            {"name": "secret"},
            {"decision": "deny", "status": 403, "outcome": "error", "error_code": -32003},
        ),
        ({"name": "hidden"}, {"hidden": True, "outcome": "error", "target": "hidden"}),
    ],
    ids=["allowed", "tool-error", "denied", "hidden"],
)
async def test_each_request_gets_one_record_with_the_decision(
    params: dict[str, Any], expected: dict[str, Any]
) -> None:
    stream = io.StringIO()
    policy = 'permit(principal, action == Action::"call_tool", resource) unless { resource == Tool::"secret" };'
    chain = Pipeline(
        [
            AuditStep(enabled=True, writer=AuditWriter(stream, server="ns/time")),
            ToolFilterStep(ToolPolicy(allowed=frozenset({"echo", "fails", "secret"}))),
            AuthzStep(Authorizer(compile_authz([policy]))),
        ]
    ).bind(backend)
    await chain(call("tools/call", params))
    [record] = records(stream)
    assert record["event"] == "mcp_audit"
    assert record["subject"] == "alice"
    assert record["method"] == "tools/call"
    assert record["target_type"] == "tool"
    assert record["server"] == "ns/time"
    assert record["session"] == "ssssssss"
    assert record["time"].endswith("Z")
    assert record["duration_ms"] >= 0
    assert {k: record.get(k) for k in expected} == expected


async def test_audit_is_switched_live_and_writes_nothing_when_off() -> None:
    stream = io.StringIO()
    step = AuditStep(enabled=False, writer=AuditWriter(stream))
    chain = Pipeline([step]).bind(backend)
    await chain(call("prompts/get", {"name": "p"}))
    assert stream.getvalue() == ""
    step.enabled = True
    await chain(call("prompts/get", {"name": "p"}))
    [record] = records(stream)
    assert (record["target_type"], record["target"]) == ("prompt", "p")


def test_refusals_are_recorded_only_when_enabled() -> None:
    stream = io.StringIO()
    step = AuditStep(enabled=False, writer=AuditWriter(stream))
    step.record_refusal(path="/mcp", status=401, reason="expired", subject=None, seconds=0.001)
    assert stream.getvalue() == ""
    step.enabled = True
    step.record_refusal(path="/mcp", status=401, reason="expired", subject=None, seconds=0.001)
    [record] = records(stream)
    assert (record["status"], record["decision"], record["reason"]) == (401, "deny", "expired")
