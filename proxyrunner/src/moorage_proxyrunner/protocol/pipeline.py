"""The middleware seam: a chain of async steps over one parsed MCP request and its caller.

Spec §4.4 orders the proxy's middleware: body limit → authentication → audit → MCP parsing →
tool filter/override → authorisation → backend. The body limit, transport checks and parsing
happen in the HTTP layer; everything from there on is a `Step` here. A step receives the
`McpCall` and the rest of the chain (`call_next`), and returns the `Reply`: it may rewrite the
call (a renamed tool), answer it without calling on (a denial), or rewrite the reply (a filtered
tool list). What a step decides that a step before it must know (the audit step records
authorisation's decision) travels with the call, in its `Decisions`. A client's notifications pass through it too (an `McpCall` without an id); the
server's notifications that stream while a request runs (progress, logs) do not.

Authentication, audit and authorisation plug in here; the tool filter/override is the first step
shipped. Pure orchestration: no I/O of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, Protocol

from moorage_proxyrunner.protocol.jsonrpc import Json, RequestId

Era = Literal["legacy", "modern"]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling. `subject` is None for an unauthenticated caller (local mode, no OIDC).

    `token` is the bearer token authentication verified: outgoing token exchange (RFC 8693)
    trades it for the upstream's; it is never logged, compared or sent upstream as it is.
    """

    subject: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)
    token: str | None = field(default=None, repr=False, compare=False)


ANONYMOUS = Identity()


@dataclass(slots=True)
class Decisions:
    """What the steps decided about one request, handed on with it to the audit step.

    One object per request, shared by every copy of its `McpCall` (`with_params`,
    `wanting_result`), so that what a later step decides reaches the audit step, which reads it
    when it writes its records. `entry`: the audit record's fields as the request entered the
    pipeline (None while audit is off); `decision`: authorisation's verdict ("allow" or "deny";
    None: it decided nothing); `hidden`: the tool filter hid the tool asked for; `forwarded`:
    the audit gate let the request through to the backend.
    """

    entry: dict[str, Any] | None = None
    decision: str | None = None
    hidden: bool = False
    forwarded: bool = False


@dataclass(frozen=True, slots=True)
class McpCall:
    """One client request (or notification: `id` None) on its way to the backend.

    `message` is the JSON-RPC request object; a step that changes it passes a rewritten copy
    on (`with_params`). `want_result`: a later step needs the full result (an HTTP backend then
    buffers the response instead of streaming it through). `decisions`: what the steps decided
    about it so far.
    """

    message: Json
    identity: Identity
    era: Era
    session_id: str | None = None
    want_result: bool = False
    decisions: Decisions = field(default_factory=Decisions)

    @property
    def method(self) -> str:
        value: str = self.message.get("method", "")
        return value

    @property
    def id(self) -> RequestId | None:
        value: RequestId | None = self.message.get("id")
        return value

    @property
    def params(self) -> Json:
        value: Json = self.message.get("params") or {}
        return value

    def with_params(self, params: Json) -> McpCall:
        message = dict(self.message)
        message["params"] = params
        return McpCall(
            message, self.identity, self.era, self.session_id, self.want_result, self.decisions
        )

    def wanting_result(self) -> McpCall:
        return McpCall(self.message, self.identity, self.era, self.session_id, True, self.decisions)


@dataclass(slots=True)
class Reply:
    """The answer to a call.

    `message` is the JSON-RPC response, or None when the backend streams its answer straight
    to the client (`passthrough` then holds the backend's handle). `status` is the HTTP status
    a JSON answer is sent with (a denial is 403 with a JSON-RPC error).
    """

    message: Json | None
    status: int = 200
    passthrough: Any = None


CallNext = Callable[[McpCall], Awaitable[Reply]]


class Step(Protocol):
    """One middleware step."""

    async def __call__(self, call: McpCall, call_next: CallNext) -> Reply: ...


class Pipeline:
    """The ordered steps; `bind` composes them once around a backend's terminal call."""

    def __init__(self, steps: Sequence[Step] = ()) -> None:
        self.steps = tuple(steps)

    def bind(self, terminal: CallNext) -> CallNext:
        call = terminal
        for step in reversed(self.steps):
            call = partial(step, call_next=call)
        return call
