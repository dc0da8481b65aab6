"""A client session as every replica of a proxy sees it, and how it is written down.

A session's live parts (an open stream, a request in flight, a stdio pipe) stay in the process
that holds them, its owner; what another replica needs to go on serving the session is the
record: who opened it (the only subject who may use it), the era it negotiated, which replica
owns its live parts (empty: none does, any replica may adopt it), and what the backend keeps for
it (`state`: small JSON values, each written on its own, e.g. the upstream target of an HTTP
session or a client's capabilities and log level). Records read back from a store are input:
`decode_record` checks every field and refuses anything else. Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

Json = Any
"""A JSON value (what `json.loads` returns)."""

KINDS: Final = frozenset({"streamable-http", "sse", "aggregate"})
"""Which endpoint made the session: a streamable-HTTP session (`Mcp-Session-Id`), a legacy
HTTP+SSE session (`session_id` in the messages URL), or an aggregator's client session."""

MAX_STATE_BYTES: Final = 64 * 1024
"""The most a record's `state` may take, encoded: what sessions keep must stay small, and a
store must never be made to hold a client's payloads."""


class RecordError(ValueError):
    """A record that cannot be stored or was not stored by us."""


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: str
    kind: str
    owner: str
    """`host:port` of the replica holding the session's live parts; "" when none does."""
    subject: str | None
    """Who opened the session (None without authentication): its only user."""
    era: str
    """The protocol version the session negotiated ("" before it is known)."""
    created: float
    """Wall-clock seconds when the session was opened."""
    state: Mapping[str, Json] = field(default_factory=dict)


def encode_record(record: SessionRecord) -> dict[str, str]:
    """The record as flat string fields (one per top-level value and one per state key), so a
    store can change one state key without rewriting the others."""
    check_record(record)
    fields = {
        "id": record.id,
        "kind": record.kind,
        "owner": record.owner,
        "subject": json.dumps(record.subject),
        "era": record.era,
        "created": repr(record.created),
    }
    for key, value in record.state.items():
        fields[f"s:{key}"] = json.dumps(value, separators=(",", ":"))
    return fields


def decode_record(fields: Mapping[str, str]) -> SessionRecord:
    """The record `encode_record` wrote; RecordError for anything else."""
    try:
        subject = json.loads(fields["subject"])
        record = SessionRecord(
            id=fields["id"],
            kind=fields["kind"],
            owner=fields["owner"],
            subject=subject,
            era=fields["era"],
            created=float(fields["created"]),
            state={
                name[2:]: json.loads(value)
                for name, value in fields.items()
                if name.startswith("s:")
            },
        )
    except (KeyError, TypeError, ValueError, RecursionError) as exc:
        # RecursionError: JSON nested deeper than the parser goes.
        raise RecordError(f"not a session record: {exc}") from None
    unknown = set(fields) - {"id", "kind", "owner", "subject", "era", "created"}
    if any(not name.startswith("s:") for name in unknown):
        raise RecordError(f"not a session record: unknown fields {sorted(unknown)}")
    check_record(record)
    return record


def check_record(record: SessionRecord) -> None:
    """RecordError when `record` could not have come from a proxy."""
    if not record.id or not record.id.isprintable() or len(record.id) > 256:
        raise RecordError("a session id is 1 to 256 printable characters")
    if record.kind not in KINDS:
        raise RecordError(f"unknown session kind {record.kind!r}")
    if record.subject is not None and not isinstance(record.subject, str):
        raise RecordError("a session's subject is a string or null")
    try:
        size = len(json.dumps(record.state))
    except (TypeError, ValueError, RecursionError) as exc:
        raise RecordError(f"a session's state is JSON: {exc}") from None
    if size > MAX_STATE_BYTES:
        raise RecordError(f"a session's state is at most {MAX_STATE_BYTES} bytes")
