"""Audit records: one JSON line per request through the pipeline, with what the steps decided."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from moorage_proxyrunner.config.toolpolicy import ToolPolicy
from moorage_proxyrunner.policy.audit import AuditStep, AuditWriter
from moorage_proxyrunner.policy.authz import Authorizer, AuthzStep, compile_authz
from moorage_proxyrunner.policy.toolfilter import ToolFilterStep
from moorage_proxyrunner.protocol.pipeline import Identity, McpCall, Pipeline, Reply

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


def gated_chain(step: AuditStep, terminal: Any, policy: str | None = None) -> Any:
    steps: list[Any] = [step, ToolFilterStep(ToolPolicy(overrides={}))]
    if policy is not None:
        steps.append(AuthzStep(Authorizer(compile_authz([policy]))))
    steps.append(step.gate)
    return Pipeline(steps).bind(terminal)


async def test_the_forward_record_is_written_before_the_backend_sees_the_request() -> None:
    stream = io.StringIO()
    step = AuditStep(enabled=True, writer=AuditWriter(stream))
    seen_by_backend: list[list[dict[str, Any]]] = []

    async def rewriting_backend(c: McpCall) -> Reply:
        seen_by_backend.append(records(stream))
        c.message["id"] = 9001  # as the stdio bridge does: a backend id
        return Reply({"jsonrpc": "2.0", "id": 9001, "result": {}})

    await gated_chain(step, rewriting_backend)(call("tools/call", {"name": "echo"}))
    [[forward]] = seen_by_backend
    assert forward["event"] == "mcp_audit_forward"
    assert (forward["request_id"], forward["forwarded_target"]) == (4, "echo")
    assert [r["event"] for r in records(stream)] == ["mcp_audit_forward", "mcp_audit"]
    assert records(stream)[1]["request_id"] == 4
    assert records(stream)[1]["forwarded"] is True


async def test_a_request_that_cannot_be_audited_is_not_forwarded() -> None:
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError("stdout is gone")

    forwarded: list[McpCall] = []

    async def backend_spy(c: McpCall) -> Reply:
        forwarded.append(c)
        return Reply({"jsonrpc": "2.0", "id": c.id, "result": {}})

    step = AuditStep(enabled=True, writer=AuditWriter(Broken()))
    reply = await gated_chain(step, backend_spy)(call("tools/call", {"name": "echo"}))
    assert forwarded == []
    assert reply.status == 500
    assert reply.message is not None
    assert "could not be audited" in reply.message["error"]["message"]


async def test_a_denied_request_never_gets_a_forward_record() -> None:
    stream = io.StringIO()
    step = AuditStep(enabled=True, writer=AuditWriter(stream))
    policy = 'permit(principal, action, resource) when { resource == Tool::"echo" };'
    reply = await gated_chain(step, backend, policy)(call("tools/call", {"name": "rm"}))
    assert reply.status == 403
    [record] = records(stream)
    assert (record["event"], record["decision"], record["forwarded"]) == (
        "mcp_audit",
        "deny",
        False,
    )


@pytest.mark.parametrize(
    ("method", "status"),
    [("notifications/cancelled", 202), ("notifications/progress", 202), ("tools/call", 403)],
)
async def test_notifications_are_audited_and_only_client_ones_pass_authorisation(
    method: str, status: int
) -> None:
    stream = io.StringIO()
    step = AuditStep(enabled=True, writer=AuditWriter(stream))
    policy = "permit(principal, action, resource);"

    async def accepting(c: McpCall) -> Reply:
        return Reply(None, status=202)

    note = McpCall({"jsonrpc": "2.0", "method": method, "params": {"name": "x"}}, ALICE, "legacy")
    reply = await gated_chain(step, accepting, policy)(note)
    assert reply.status == status
    final = records(stream)[-1]
    assert (final["method"], final["request_id"], final["status"]) == (method, None, status)
    assert final["outcome"] == ("accepted" if status == 202 else "error")


def test_a_record_that_is_not_utf8_is_written_escaped() -> None:
    class Utf8Only(io.StringIO):
        def write(self, text: str) -> int:
            text.encode()
            return super().write(text)

    stream = Utf8Only()
    AuditWriter(stream).write({"subject": "\ud800x", "target": "é"})
    [record] = records(stream)
    assert record == {"subject": "\ud800x", "target": "é"}
