"""Modern clients' calls parked on a server request (2026-07-28 `input_required`).

A modern client cannot receive server-to-client requests. When the server asks something
during such a client's call, the call is answered `input_required` with what the server is
waiting for and a sealed `requestState`, and parked; the client retries the same call with that
state and its `inputResponses`, the answers go to the server under its own ids, and the call
resumes (or is asked again for what is still missing). Requests the server sends close together
are answered in one round (`coalesce`); a call nobody resumes within `park_ttl` is cancelled.

A parked call lives in this replica's memory: the sealed state names the replica holding it
(`<parked id>@<address>`), so that a retry landing on another replica is sent here
(`holder`), and the seal's key and expiry (wall-clock seconds) are shared between replicas.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterable

import structlog

from moorage_proxyrunner.backends.stdio.peers import Peer
from moorage_proxyrunner.backends.stdio.pending import NO_TOKEN, InputRequest, Pending
from moorage_proxyrunner.front.streams import Exchange
from moorage_proxyrunner.protocol import eras
from moorage_proxyrunner.protocol.jsonrpc import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    Json,
    RequestId,
    error_response,
    result_response,
)
from moorage_proxyrunner.protocol.requeststate import Bookkeeping, StateRefusal, StateSeal

log = structlog.get_logger(__name__)


class Parking:
    """Parks modern calls on `input_required` and resumes them on the client's retry."""

    def __init__(
        self,
        *,
        coalesce: float,
        park_ttl: float,
        send_later: Callable[[Json], None],
        is_pending: Callable[[int], bool],
        cancel: Callable[[int, str], None],
        answer: Callable[[Pending, Json], None],
    ) -> None:
        self._coalesce = coalesce
        self._park_ttl = park_ttl
        self._send_later = send_later
        self._is_pending = is_pending
        self._cancel = cancel
        self._answer = answer
        self.seal = StateSeal()
        """Seals `requestState` (the parked id and whose call it is): a client can neither
        forge one, nor alter one it was given, nor resume another subject's call."""
        self.address = ""
        """This replica's address, named in the states it seals ("": one replica)."""
        self._parked: dict[str, Pending] = {}
        """Parked id → the call waiting for its client's retry. Invariants: an entry's
        `parked_id` is its key and its `exchange` is None (no client waits on it); a call has
        at most one entry, under the id of its latest round; an entry leaves on resume,
        expiry (`park_ttl`), cancellation or the end of the process."""

    def holder(self, token: str, *, principal: str | None) -> str | None:
        """The address of the replica holding the call a sealed state resumes; None when the
        state is not honoured (the replica it reaches refuses it)."""
        opened = self.seal.open(token, principal=principal, now=time.time())
        if isinstance(opened, StateRefusal):
            return None
        return opened.call.rpartition("@")[2]

    def is_parked(self, parked_id: str | None) -> bool:
        return parked_id is not None and parked_id in self._parked

    def forget(self, parked_id: str | None) -> None:
        if parked_id is not None:
            self._parked.pop(parked_id, None)

    def forget_all(self) -> None:
        """The process ended: no parked call can resume."""
        for parked_id in list(self._parked):
            self._parked.pop(parked_id).clear_timers()

    def ask(
        self,
        pending: Pending,
        backend_id: RequestId,
        method: str,
        params: Json,
        capability: str | None,
    ) -> None:
        """The server asks `method` during `pending`, a modern client's call."""
        if capability is None:
            self._send_later(
                error_response(
                    backend_id, METHOD_NOT_FOUND, f"{method} cannot be sent to a 2026-07-28 client"
                )
            )
            return
        if not eras.has_capability(pending.capabilities, capability):
            # The shared backend only knows the proxy's capabilities; tell it this client lacks
            # the one it needs, in the modern wire's own terms, and let it decide (a server
            # that cannot do without it fails the call with this same error).
            code, text, data = eras.missing_capability_error(capability)
            self._send_later(error_response(backend_id, code, text, data))
            return
        key = capability
        number = 2
        while key in pending.inputs:
            key = f"{capability}-{number}"
            number += 1
        pending.inputs[key] = InputRequest(backend_id, method, params)
        if pending.exchange is not None:
            if pending.flush is not None:
                pending.flush.cancel()
            loop = asyncio.get_running_loop()
            pending.flush = loop.call_later(self._coalesce, self._flush, pending)

    def drop_input(self, pending: Iterable[Pending], backend_id: object) -> None:
        """The server cancelled a request it asked of a modern client: stop asking it."""
        for item in pending:
            for input_key, request in list(item.inputs.items()):
                if request.backend_id == backend_id:
                    del item.inputs[input_key]
                    return

    def _flush(self, pending: Pending) -> None:
        """Answer the modern client `input_required` with what the server is waiting for."""
        pending.flush = None
        exchange = pending.exchange
        if exchange is None or not pending.inputs or not self._is_pending(pending.backend_id):
            return
        # A fresh id each round: a client must echo the latest state, not an earlier one.
        parked_id = secrets.token_urlsafe(12)
        if pending.parked_id is not None:
            self._parked.pop(pending.parked_id, None)
        pending.parked_id = parked_id
        self._parked[parked_id] = pending
        requests = {
            key: {"method": item.method, "params": item.params}
            for key, item in pending.inputs.items()
        }
        result: Json = {
            "resultType": "input_required",
            "inputRequests": requests,
            "requestState": self.seal.seal(
                Bookkeeping(
                    pending.principal,
                    f"{parked_id}@{self.address}",
                    None,
                    time.time() + self._park_ttl,
                )
            ),
        }
        pending.exchange = None
        if pending.peer is not None and pending.client_id is not None:
            pending.peer.inflight.pop(pending.client_id, None)
        exchange.finish(
            result_response(pending.client_id if pending.client_id is not None else 0, result)
        )
        loop = asyncio.get_running_loop()
        if pending.expiry is not None:
            pending.expiry.cancel()
        pending.expiry = loop.call_later(self._park_ttl, self._expire, parked_id)

    def _expire(self, parked_id: str) -> None:
        pending = self._parked.pop(parked_id, None)
        if pending is None:
            return
        log.info("input_required_expired", method=pending.method)
        self._cancel(pending.backend_id, "the client did not answer in time")

    def resume(self, peer: Peer, message: Json, exchange: Exchange, token: str) -> None:
        """A modern client's retry carrying this proxy's `requestState` (`token`)."""
        client_id: RequestId = message["id"]
        params: Json = message.get("params") or {}
        opened = self.seal.open(token, principal=peer.principal, now=time.time())
        if isinstance(opened, StateRefusal):
            exchange.finish(error_response(client_id, opened.code, opened.message))
            return
        parked_id, _, holder = opened.call.rpartition("@")
        if holder != self.address:
            exchange.finish(
                error_response(
                    client_id,
                    INVALID_PARAMS,
                    "The proxy replica holding this call stopped; send the request again "
                    "without requestState",
                )
            )
            return
        pending = self._parked.get(parked_id)
        if pending is None:
            exchange.finish(
                error_response(
                    client_id, INVALID_PARAMS, "The requestState is unknown or has expired"
                )
            )
            return
        key = eras.NAME_BEARING.get(pending.method)
        if (
            message.get("method") != pending.method
            or (key is not None and params.get(key) != pending.target)
            or peer.principal != pending.principal
        ):
            exchange.finish(
                error_response(
                    client_id, INVALID_PARAMS, "The requestState belongs to a different request"
                )
            )
            return
        self._parked.pop(pending.parked_id or "", None)
        if pending.expiry is not None:
            pending.expiry.cancel()
            pending.expiry = None
        pending.peer = peer
        pending.client_id = client_id
        pending.exchange = exchange
        pending.capabilities = peer.capabilities
        pending.log_level = peer.log_level
        meta = params.get("_meta")
        pending.progress_token = (
            meta["progressToken"]
            if isinstance(meta, dict) and "progressToken" in meta
            else NO_TOKEN
        )
        if pending.final is not None:
            self._answer(pending, pending.final)
            return
        peer.inflight[client_id] = pending.backend_id
        responses = params.get("inputResponses")
        answered = responses if isinstance(responses, dict) else {}
        for input_key, item in list(pending.inputs.items()):
            if input_key in answered and isinstance(answered[input_key], dict):
                del pending.inputs[input_key]
                self._send_later(result_response(item.backend_id, answered[input_key]))
        if pending.inputs:
            # Some answers are missing: ask again for exactly those.
            self._flush(pending)
