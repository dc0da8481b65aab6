"""A modern-era backend's `input_required`, asked of a handshake-era client as server requests.

When the shared process runs in the 2026-07-28 era, a server that needs something from a
handshake-era client answers the call `input_required`. The client's wire has no such result:
it expects `elicitation/create`, `sampling/createMessage` or `roots/list` requests during its
call. So each input request goes to the client's stream as one of those (under a proxy-assigned
id), the answers are gathered, and when the round is complete the call is retried with the
answers under the server's keys and the server's own `requestState` (`Retry`); a further
`input_required` starts the next round. The client sees what a handshake-era server would
have sent it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from moorage_proxyrunner.backends.stdio.delivery import Delivery
from moorage_proxyrunner.backends.stdio.peers import Peer
from moorage_proxyrunner.backends.stdio.pending import Pending
from moorage_proxyrunner.protocol import eras, translation
from moorage_proxyrunner.protocol.jsonrpc import INTERNAL_ERROR, Json, error_response
from moorage_proxyrunner.protocol.translation import ServerRequest, Untranslatable

Retry = Callable[[Pending, Json, str | None], None]
"""Sends the call again with these `inputResponses` and the server's `requestState`."""


@dataclass(eq=False, slots=True)
class Round:
    """One `input_required` of a call, while its client answers."""

    asked: list[ServerRequest]
    server_state: str | None
    answers: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    """Proxy-assigned request id → the server's input key it asks."""


class InputRounds:
    """Asks handshake-era clients what a modern backend's `input_required` asks."""

    def __init__(self, *, delivery: Delivery, retry: Retry) -> None:
        self._delivery = delivery
        self._retry = retry
        self._ids = itertools.count(1)
        self._rounds: dict[str, tuple[Peer, Pending, Round]] = {}
        """Proxy-assigned id → the call whose round asked it. Invariant: a key is here until
        its answer arrives, or its call is answered, cancelled or lost with its process."""

    def start(self, pending: Pending, result: Json) -> Json | None:
        """Ask `pending`'s client what `result` asks; an error to answer the call with when
        that cannot be done (None: the questions are on their way)."""
        peer = pending.peer
        asked = translation.server_requests(result)
        if isinstance(asked, Untranslatable):
            return error_response(pending.client_id, asked.code, asked.message)
        assert peer is not None
        for request in asked:
            capability = eras.CAPABILITY_FOR_SERVER_REQUEST[request.method]
            if not eras.has_capability(peer.capabilities, capability):
                code, text, data = eras.missing_capability_error(capability)
                return error_response(pending.client_id, code, text, data)
        state = result.get("requestState")
        current = Round(asked, state if isinstance(state, str) else None)
        if not asked:
            # Only state to hand back (the server shed load): retry at once.
            self._retry(pending, {}, current.server_state)
            return None
        for request in asked:
            key = f"moorage-input-{next(self._ids)}"
            body: Json = {
                "jsonrpc": "2.0",
                "id": key,
                "method": request.method,
                "params": request.params,
            }
            if not self._delivery.to_request(pending, body):
                self.forget(pending)
                return error_response(
                    pending.client_id,
                    INTERNAL_ERROR,
                    f"The client has no open stream to receive {request.method}",
                )
            current.keys[key] = request.key
            self._rounds[key] = (peer, pending, current)
        return None

    def take_answer(self, peer: Peer, message: Json) -> tuple[Pending, Json] | bool:
        """A client's answer: False when it answers nothing asked here; True when recorded;
        (call, error) when the client refused, which fails the call as it would fail directly."""
        key = message.get("id")
        entry = self._rounds.get(key) if isinstance(key, str) else None
        if entry is None or entry[0] is not peer:
            return False
        assert isinstance(key, str)
        _, pending, current = self._rounds.pop(key)
        error = message.get("error")
        if isinstance(error, dict) or not isinstance(message.get("result"), dict):
            self.forget(pending)
            fault = error if isinstance(error, dict) else {}
            return pending, error_response(
                pending.client_id,
                fault.get("code", INTERNAL_ERROR)
                if isinstance(fault.get("code"), int)
                else INTERNAL_ERROR,
                str(fault.get("message") or "The client did not answer the request"),
            )
        current.answers[current.keys.pop(key)] = message["result"]
        if not current.keys:
            responses = translation.input_responses(current.asked, current.answers)
            self._retry(pending, responses, current.server_state)
        return True

    def forget(self, pending: Pending) -> None:
        """`pending` is answered, cancelled or gone: drop what its round still waits for."""
        for key, (_, item, _) in list(self._rounds.items()):
            if item is pending:
                del self._rounds[key]

    def forget_peer(self, peer: Peer) -> None:
        for key, (owner, _, _) in list(self._rounds.items()):
            if owner is peer:
                del self._rounds[key]

    def clear(self) -> None:
        self._rounds.clear()
