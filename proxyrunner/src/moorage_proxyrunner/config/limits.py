"""The proxy's resource limits: what one client may hold of its time, memory and backend.

Every limit is a flag of `run` and an environment variable (the flag wins; an empty variable
counts as unset). In a cluster the operator starts the proxy with fixed flags, so the
variables are how a limit is changed there: `spec.resourceOverrides.proxyDeployment.env` of the
MCPServer puts them on the proxy's container.

Pure: parsing, and the JSON-RPC errors a client gets when it reaches a limit (the endpoints
send them: `bridging`, `backends.reverse`; the bounds themselves live in `sessions`, `streams`
and `fairness`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from moorage_core.readtimeouts import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    READ_TIMEOUT_SPECS,
    ReadTimeouts,
)
from moorage_core.settings import (
    SettingSpec,
    add_setting_flags,
    parse_positive_duration,
    parse_whole_number,
    read_settings,
)
from moorage_proxyrunner.protocol.jsonrpc import INVALID_PARAMS, Json, RequestId, error_response

MIB = 1024 * 1024

REQUEST_TIMED_OUT = -32001
"""The JSON-RPC code MCP SDKs use for a request that timed out."""
LIMIT_REACHED = -32000
"""A server error: the caller holds as much as a limit allows."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what clients may hold; each field names its variable and flag."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    """HEADER_TIMEOUT / --header-timeout: seconds a connection may take to send a request's
    line and headers (from connecting, or from the previous answer); also how long an idle
    keep-alive connection stays open. Default 30s."""
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    """BODY_TIMEOUT / --body-timeout: seconds from a request's headers until its whole body is
    in. Default 60s."""
    request_timeout: float = 300.0
    """REQUEST_TIMEOUT / --request-timeout: seconds the backend has to answer a request; then
    the client gets JSON-RPC error -32001 and the backend is told to stop (stdio:
    `notifications/cancelled`; HTTP: the upstream request is closed). Default 300s."""
    max_sessions: int = 1000
    """MAX_SESSIONS / --max-sessions: legacy sessions open at once, all clients together;
    one more is refused with HTTP 503. Default 1000."""
    max_sessions_per_subject: int = 50
    """MAX_SESSIONS_PER_SUBJECT / --max-sessions-per-subject: sessions one authenticated
    subject may hold; one more is refused with HTTP 429. Default 50 (unauthenticated callers
    are bounded by `max_sessions` only)."""
    max_capabilities_bytes: int = 64 * 1024
    """MAX_CAPABILITIES_BYTES / --max-capabilities-bytes: largest `capabilities` object (as
    JSON) a session's `initialize` may declare; the proxy keeps it for the session's life.
    Larger → JSON-RPC error -32602 (HTTP 400). Default 64 KiB."""
    queue_max_bytes: int = 16 * MIB
    """QUEUE_MAX_BYTES / --queue-max-bytes: bytes of messages queued for one client stream
    (besides at most `queue_capacity` messages). Default 16 MiB."""
    max_inflight_per_session: int = 16
    """MAX_INFLIGHT_PER_SESSION / --max-inflight-per-session: requests one session (on the
    2026-07-28 wire: one authenticated subject) may have waiting for or at a shared stdio
    server; one more is refused with HTTP 429. Default 16."""
    max_backend_inflight: int = 64
    """MAX_BACKEND_INFLIGHT / --max-backend-inflight: requests written to a shared stdio
    server and not yet answered; beyond it requests wait and are written round-robin between
    sessions. Default 64."""
    max_subscriptions_per_session: int = 256
    """MAX_SUBSCRIPTIONS_PER_SESSION / --max-subscriptions-per-session: resource subscriptions
    one session (on the 2026-07-28 wire: one `subscriptions/listen`) may hold at a shared stdio
    server, each kept until it ends; one more is refused with JSON-RPC error -32000 (HTTP 429).
    Default 256."""
    resume_window: int = 256
    """RESUME_WINDOW / --resume-window: SSE events kept per legacy session of a shared stdio
    server (and at most 1 MiB of them) so that a client that lost a stream can resume it with
    `Last-Event-ID`; an older id is refused with HTTP 400. 0: events carry no ids and nothing
    is kept. Default 256."""

    max_rate_limit_buckets: int = 100_000
    """MAX_RATE_LIMIT_BUCKETS / --max-rate-limit-buckets: rate-limit buckets kept in memory
    (`sessionStorage.type: memory`), least recently used dropped first; a dropped bucket
    starts full again. Default 100000 (a few hundred bytes each)."""

    @property
    def read_timeouts(self) -> ReadTimeouts:
        return ReadTimeouts.of(self)


def _count(text: str) -> int:
    return parse_whole_number(text, minimum=1)


def _count_or_zero(text: str) -> int:
    return parse_whole_number(text, minimum=0)


def _bytes(text: str) -> int:
    return parse_whole_number(text, minimum=1024)


_SPECS: tuple[SettingSpec, ...] = (
    *READ_TIMEOUT_SPECS,
    SettingSpec(
        "request_timeout",
        "REQUEST_TIMEOUT",
        "request-timeout",
        parse_positive_duration,
        "DURATION",
        "how long the MCP server has to answer a request",
    ),
    SettingSpec("max_sessions", "MAX_SESSIONS", "max-sessions", _count, "N", "sessions in all"),
    SettingSpec(
        "max_sessions_per_subject",
        "MAX_SESSIONS_PER_SUBJECT",
        "max-sessions-per-subject",
        _count,
        "N",
        "sessions per authenticated subject",
    ),
    SettingSpec(
        "max_capabilities_bytes",
        "MAX_CAPABILITIES_BYTES",
        "max-capabilities-bytes",
        _bytes,
        "BYTES",
        "largest client capabilities a session keeps",
    ),
    SettingSpec(
        "queue_max_bytes",
        "QUEUE_MAX_BYTES",
        "queue-max-bytes",
        _bytes,
        "BYTES",
        "bytes queued per client stream",
    ),
    SettingSpec(
        "max_inflight_per_session",
        "MAX_INFLIGHT_PER_SESSION",
        "max-inflight-per-session",
        _count,
        "N",
        "requests in flight per session",
    ),
    SettingSpec(
        "max_backend_inflight",
        "MAX_BACKEND_INFLIGHT",
        "max-backend-inflight",
        _count,
        "N",
        "requests in flight at a shared stdio server",
    ),
    SettingSpec(
        "max_subscriptions_per_session",
        "MAX_SUBSCRIPTIONS_PER_SESSION",
        "max-subscriptions-per-session",
        _count,
        "N",
        "resource subscriptions per session",
    ),
    SettingSpec(
        "max_rate_limit_buckets",
        "MAX_RATE_LIMIT_BUCKETS",
        "max-rate-limit-buckets",
        _count,
        "N",
        "rate-limit buckets kept in memory",
    ),
    SettingSpec(
        "resume_window",
        "RESUME_WINDOW",
        "resume-window",
        _count_or_zero,
        "N",
        "SSE events kept per session for Last-Event-ID (0: off)",
    ),
)


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the limits' flags (default None, so that the environment can fill them)."""
    add_setting_flags(parser, _SPECS)


def limits_from(args: argparse.Namespace, *, environ: Mapping[str, str] | None = None) -> Limits:
    """The limits from the flags in `args` and `environ` (default `os.environ`);
    `SettingError` naming the variable and flag of an unusable value."""
    env = os.environ if environ is None else environ
    return Limits(**read_settings(_SPECS, args=vars(args), environ=env))


# -- the drain: how long a replica shutting down lets its requests in flight finish ----------

DEFAULT_DRAIN_TIMEOUT = 10.0
"""Seconds, unless MOORAGE_DRAIN_TIMEOUT / --drain-timeout says otherwise."""

_DRAIN_SPECS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "drain_timeout",
        "MOORAGE_DRAIN_TIMEOUT",
        "drain-timeout",
        parse_positive_duration,
        "DURATION",
        "how long SIGTERM lets requests in flight finish before streams are ended and the "
        f"sessions handed over (e.g. 30s; default {DEFAULT_DRAIN_TIMEOUT:g}s)",
    ),
)


def add_drain_argument(parser: argparse.ArgumentParser) -> None:
    """Register `--drain-timeout` (default None, so that the environment can fill it)."""
    add_setting_flags(parser, _DRAIN_SPECS)


def drain_timeout_from(
    args: argparse.Namespace, *, environ: Mapping[str, str] | None = None
) -> float:
    """Seconds from `--drain-timeout`, else MOORAGE_DRAIN_TIMEOUT in `environ` (default
    `os.environ`), else the default; `SettingError` naming both for an unusable value."""
    env = os.environ if environ is None else environ
    values = read_settings(_DRAIN_SPECS, args=vars(args), environ=env)
    return float(values.get("drain_timeout", DEFAULT_DRAIN_TIMEOUT))


def timeout_error(request_id: RequestId | None, seconds: float) -> Json:
    return error_response(
        request_id,
        REQUEST_TIMED_OUT,
        f"The MCP server did not answer within {seconds:g}s; the request was cancelled",
    )


def overloaded_error(request_id: RequestId | None, limit: int) -> Json:
    return error_response(
        request_id,
        LIMIT_REACHED,
        f"Too many requests in flight: at most {limit} per session; retry when one has finished",
    )


def session_refusal(
    request_id: RequestId | None, *, per_subject: bool, limit: int
) -> tuple[int, Json]:
    """The HTTP status and JSON-RPC error for a session over a cap: 429 for the subject's own
    cap (it can close one of its sessions), 503 for the proxy's total."""
    if per_subject:
        text = f"Too many sessions: at most {limit} per client; close one (DELETE) and retry"
        return 429, error_response(request_id, LIMIT_REACHED, text)
    text = f"The proxy has {limit} sessions open, its limit; retry later"
    return 503, error_response(request_id, LIMIT_REACHED, text)


def capabilities_refusal(request_id: RequestId | None, limit: int) -> Json:
    return error_response(
        request_id,
        INVALID_PARAMS,
        f"params.capabilities is larger than {limit} bytes as JSON",
    )


def is_over_subscriptions(held: Collection[str], wanted: Iterable[str], limit: int) -> bool:
    """Whether holding `wanted` too would take a session past `limit` subscriptions."""
    return len(set(held).union(wanted)) > limit


def subscriptions_refusal(request_id: RequestId | None, limit: int) -> Json:
    return error_response(
        request_id,
        LIMIT_REACHED,
        f"Too many resource subscriptions: at most {limit} per session "
        "(MAX_SUBSCRIPTIONS_PER_SESSION); unsubscribe from one and retry",
    )
