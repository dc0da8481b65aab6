"""Tool filter and override (spec §2.2, §4.4): which tools clients see, and under what name.

The pipeline step that applies the pure rules (`moorage_proxyrunner.config.toolpolicy`,
which the proxy's settings carry as the initial policy). `tools/list` shows only
allowed tools, renamed and re-described; `tools/call` maps a client-facing name back to the
server's. A hidden tool must be indistinguishable from a nonexistent one, so a call to a name
the client cannot see (hidden, the old name of a renamed tool, a server tool shadowed by another
tool's new name) is sent to the server under a stand-in name no tool has, and the server's own
answer for an unknown tool comes back with the client's name put back: the client gets exactly
what a nonexistent tool gets, whatever the server answers for those. A `tools/call` without a
string `name` is refused here (-32602), not passed on: a server reading the message another way
(a `Name` key, say) could find a tool the filter never saw.
"""

from __future__ import annotations

import secrets
from typing import Any

from moorage_proxyrunner.config.toolpolicy import ToolPolicy
from moorage_proxyrunner.protocol.jsonrpc import INVALID_PARAMS, error_response
from moorage_proxyrunner.protocol.pipeline import CallNext, McpCall, Reply

STAND_IN_PREFIX = "moorage-unknown-"
"""Stand-in names for hidden tools start with this (then 16 random hex digits)."""


def swap_text(value: Any, old: str, new: str) -> Any:
    """`value` with `old` replaced by `new` in every string inside it."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [swap_text(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: swap_text(v, old, new) for k, v in value.items()}
    return value


async def answer_as_unknown(call: McpCall, name: str, call_next: CallNext) -> Reply:
    """Call a stand-in name no tool has and answer as the server (and the steps after this
    one) answered it, with the client's `name` in place of the stand-in."""
    call.decisions.hidden = True
    stand_in = STAND_IN_PREFIX + secrets.token_hex(8)
    params = dict(call.params)
    params["name"] = stand_in
    reply = await call_next(call.with_params(params).wanting_result())
    if reply.message is not None:
        reply.message = swap_text(reply.message, stand_in, name)
    return reply


class ToolFilterStep:
    """Applies the current `ToolPolicy` (replaced live when the RunConfig changes)."""

    def __init__(self, policy: ToolPolicy) -> None:
        self.policy = policy

    async def __call__(self, call: McpCall, call_next: CallNext) -> Reply:
        policy = self.policy
        if call.method == "tools/call" and not isinstance(call.params.get("name"), str):
            # Refused, not passed on: a server might find a name where the filter found none.
            return Reply(
                error_response(call.id, INVALID_PARAMS, 'tools/call needs "name": a string'),
                status=400,
            )
        if not policy.is_active:
            return await call_next(call)
        if call.method == "tools/list":
            reply = await call_next(call.wanting_result())
            result = (reply.message or {}).get("result")
            if isinstance(result, dict) and isinstance(result.get("tools"), list):
                result["tools"] = policy.present(result["tools"])
            return reply
        if call.method == "tools/call":
            params = call.params
            name = params["name"]
            server_name = policy.server_name(name)
            if server_name is None:
                return await answer_as_unknown(call, name, call_next)
            if server_name != name:
                rewritten = dict(params)
                rewritten["name"] = server_name
                call = call.with_params(rewritten)
        return await call_next(call)
