"""Audit records (spec §4.4): one JSON line per MCP request, on stdout.

The audit step is the first step of the pipeline, so it sees each request as the client sent it
(the tool name the client used, before any renaming) and the reply the client gets. Later steps
tell it what they decided through `note_decision` / `note_hidden` (a context variable scoped to
the one request). Requests turned away before the pipeline (a missing or bad token) are recorded
by the authentication layer through `AuditStep.record_refusal`.

Records are written by a dedicated JSON line writer rather than through structlog, so they stay
JSON whatever the log format, and each is one `write` of one line (they interleave with log
lines, never inside them). Switching audit on or off is live: the flag is read per request.
"""

from __future__ import annotations

import contextvars
import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from moorage_proxyrunner.jsonrpc import Json
from moorage_proxyrunner.pipeline import CallNext, McpCall, Reply

RECORD_EVENT: Final = "mcp_audit"
"""The `event` of every audit record, to tell them from log lines on the same stream."""

TARGETS: Final = {
    "tools/call": ("tool", "name"),
    "prompts/get": ("prompt", "name"),
    "resources/read": ("resource", "uri"),
    "resources/subscribe": ("resource", "uri"),
    "resources/unsubscribe": ("resource", "uri"),
}


@dataclass(slots=True)
class _Note:
    """What the steps after the audit step decided about the current request."""

    decision: str | None = None
    hidden: bool = False


_NOTE: contextvars.ContextVar[_Note | None] = contextvars.ContextVar(
    "moorage_audit_note", default=None
)


def note_decision(decision: str) -> None:
    """Tell the audit record of the current request what authorisation decided."""
    note = _NOTE.get()
    if note is not None:
        note.decision = decision


def note_hidden() -> None:
    """Tell the audit record that the tool filter hid the requested tool."""
    note = _NOTE.get()
    if note is not None:
        note.hidden = True


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
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
        stream = self._stream or sys.stdout
        stream.write(line + "\n")
        stream.flush()


class AuditStep:
    """The audit step; `enabled` is read per request (a RunConfig change flips it live)."""

    def __init__(self, *, enabled: bool = False, writer: AuditWriter | None = None) -> None:
        self.enabled = enabled
        self.writer = writer or AuditWriter()

    async def __call__(self, call: McpCall, call_next: CallNext) -> Reply:
        if not self.enabled:
            return await call_next(call)
        started = time.perf_counter()
        note = _Note()
        token = _NOTE.set(note)
        reply: Reply | None = None
        try:
            reply = await call_next(call)
            return reply
        finally:
            _NOTE.reset(token)
            self._record(call, reply, note, time.perf_counter() - started)

    def _record(self, call: McpCall, reply: Reply | None, note: _Note, seconds: float) -> None:
        kind, name = target_of(call.message)
        record: dict[str, Any] = {
            "time": _now(),
            "event": RECORD_EVENT,
            "server": self.writer.server,
            "subject": call.identity.subject,
            "method": call.method,
            "target_type": kind,
            "target": name,
            "decision": note.decision or "allow",
            "status": None,
            "outcome": "cancelled",
            "duration_ms": round(seconds * 1000, 3),
            "era": call.era,
            "session": call.session_id[:8] if call.session_id else None,
            "request_id": call.id,
        }
        if note.hidden:
            record["hidden"] = True
        if reply is not None:
            record["status"] = reply.status
            message = reply.message
            error = message.get("error") if message is not None else None
            if message is None:
                record["outcome"] = "streamed"
            elif isinstance(error, dict):
                record["outcome"] = "error"
                record["error_code"] = error.get("code")
            else:
                result = message.get("result")
                is_error = isinstance(result, dict) and result.get("isError") is True
                record["outcome"] = "tool_error" if is_error else "ok"
        self.writer.write(record)

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
