"""Audit records (spec §4.4): one JSON line per MCP request, on stdout.

The audit step is the first step of the pipeline, so it sees each request as the client sent it
(the tool name the client used, before any renaming) and the reply the client gets. Later steps
tell it what they decided in the call's `Decisions` (`pipeline.McpCall.decisions`), which every
copy of the call shares. Requests turned away before the pipeline (a missing or bad token) are recorded
by the authentication layer through `AuditStep.record_refusal`.

Audit comes before the backend: the audit step's `gate` is the last step of the pipeline, and it
writes a `mcp_audit_forward` record of the request exactly as it will be forwarded (after any
renaming, with the decision) before it calls on to the backend; when that record cannot be
written the request is answered with an error and not forwarded. The `mcp_audit` record (one per
request, with the outcome) follows when the answer is known. Both name the client's own request
id and what the client asked for, read when the request entered the pipeline: the backend may
rewrite the message it is handed (the stdio bridge gives it a backend id).

Records are written by a dedicated JSON line writer rather than through structlog, so they stay
JSON whatever the log format, and each is one `write` of one line (they interleave with log
lines, never inside them). A record whose text is not valid UTF-8 (a lone surrogate in a token
claim) is written with non-ASCII characters escaped rather than lost. Switching audit on or off
is live: the flag is read per request.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import Any, Final, TextIO

import structlog

from moorage_proxyrunner.protocol.jsonrpc import INTERNAL_ERROR, Json, error_response
from moorage_proxyrunner.protocol.pipeline import CallNext, Decisions, McpCall, Reply

log = structlog.get_logger(__name__)

RECORD_EVENT: Final = "mcp_audit"
"""The `event` of every audit record, to tell them from log lines on the same stream."""
FORWARD_EVENT: Final = "mcp_audit_forward"
"""The `event` of the record written just before a request goes to the backend."""

TARGETS: Final = {
    "tools/call": ("tool", "name"),
    "prompts/get": ("prompt", "name"),
    "resources/read": ("resource", "uri"),
    "resources/subscribe": ("resource", "uri"),
    "resources/unsubscribe": ("resource", "uri"),
}


def target_of(message: Json) -> tuple[str | None, str | None]:
    """(kind, name) of what a request acts on, as the client named it."""
    method = message.get("method")
    params = message.get("params")
    if not isinstance(params, dict):
        return None, None
    if method == "completion/complete":
        ref = params.get("ref")
        if isinstance(ref, dict):
            if isinstance(ref.get("name"), str):
                return "prompt", ref["name"]
            if isinstance(ref.get("uri"), str):
                return "resource", ref["uri"]
        return None, None
    kind_member = TARGETS.get(method) if isinstance(method, str) else None
    if kind_member is None:
        return None, None
    kind, member = kind_member
    value = params.get(member)
    return kind, value if isinstance(value, str) else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditWriter:
    """Writes records as JSON lines to `stream` (default: the process's stdout)."""

    def __init__(self, stream: TextIO | None = None, *, server: str | None = None) -> None:
        self._stream = stream
        self.server = server

    def write(self, record: dict[str, Any]) -> None:
        """One line; raises what the stream raises (`OSError`, ...)."""
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
        try:
            line.encode()
        except UnicodeEncodeError:
            line = json.dumps(record, ensure_ascii=True, separators=(",", ":"), default=str)
        stream = self._stream or sys.stdout
        stream.write(line + "\n")
        stream.flush()


class AuditStep:
    """The audit step; `enabled` is read per request (a RunConfig change flips it live).

    `gate` is a second step, the last of the pipeline (see the module docstring).
    """

    def __init__(self, *, enabled: bool = False, writer: AuditWriter | None = None) -> None:
        self.enabled = enabled
        self.writer = writer or AuditWriter()

    async def __call__(self, call: McpCall, call_next: CallNext) -> Reply:
        if not self.enabled:
            return await call_next(call)
        started = time.perf_counter()
        decisions = call.decisions
        decisions.entry = self._entry(call)
        reply: Reply | None = None
        try:
            reply = await call_next(call)
            return reply
        finally:
            self._record(decisions, reply, time.perf_counter() - started)

    async def gate(self, call: McpCall, call_next: CallNext) -> Reply:
        """Write the forward record, then call the backend; refuse when it cannot be written."""
        note = call.decisions
        if note.entry is None:
            return await call_next(call)
        _, name = target_of(call.message)
        record = {
            **note.entry,
            "time": _now(),
            "event": FORWARD_EVENT,
            "forwarded_method": call.method,
            "forwarded_target": name,
            "decision": note.decision or "allow",
        }
        if note.hidden:
            record["hidden"] = True
        try:
            self.writer.write(record)
        except (OSError, ValueError) as exc:
            log.error("audit_write_failed", error=str(exc), method=call.method)
            return Reply(
                error_response(
                    call.id,
                    INTERNAL_ERROR,
                    "The request could not be audited, so it was not forwarded; try again later",
                ),
                status=500,
            )
        note.forwarded = True
        return await call_next(call)

    def _entry(self, call: McpCall) -> dict[str, Any]:
        kind, name = target_of(call.message)
        return {
            "time": _now(),
            "event": RECORD_EVENT,
            "server": self.writer.server,
            "subject": call.identity.subject,
            "method": call.method,
            "target_type": kind,
            "target": name,
            "era": call.era,
            "session": call.session_id[:8] if call.session_id else None,
            "request_id": call.id,
        }

    def _record(self, note: Decisions, reply: Reply | None, seconds: float) -> None:
        record: dict[str, Any] = {
            **(note.entry or {}),
            "decision": note.decision or "allow",
            "status": None,
            "outcome": "cancelled",
            "duration_ms": round(seconds * 1000, 3),
            "forwarded": note.forwarded,
        }
        if note.hidden:
            record["hidden"] = True
        if reply is not None:
            record["status"] = reply.status
            message = reply.message
            error = message.get("error") if message is not None else None
            if message is None:
                record["outcome"] = "streamed" if record["request_id"] is not None else "accepted"
            elif isinstance(error, dict):
                record["outcome"] = "error"
                record["error_code"] = error.get("code")
            else:
                result = message.get("result")
                is_error = isinstance(result, dict) and result.get("isError") is True
                record["outcome"] = "tool_error" if is_error else "ok"
        try:
            self.writer.write(record)
        except (OSError, ValueError) as exc:
            # The request was recorded before it was forwarded (or never was); only its outcome
            # is lost, and the client still gets its answer.
            log.error("audit_write_failed", error=str(exc), method=record["method"])

    def record_refusal(
        self, *, path: str, status: int, reason: str, subject: str | None, seconds: float
    ) -> None:
        """A request turned away before MCP parsing (authentication), when audit is on."""
        if not self.enabled:
            return
        self.writer.write(
            {
                "time": _now(),
                "event": RECORD_EVENT,
                "server": self.writer.server,
                "subject": subject,
                "method": None,
                "path": path,
                "target_type": None,
                "target": None,
                "decision": "deny",
                "reason": reason,
                "status": status,
                "outcome": "refused",
                "duration_ms": round(seconds * 1000, 3),
            }
        )
