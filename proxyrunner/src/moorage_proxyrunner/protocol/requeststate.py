"""The proxy's sealed `requestState` (2026-07-28 `input_required`): its own bookkeeping wrapped
around the server's state, never in place of it.

Pure: no I/O. A state the proxy hands a client carries whose call it is (the authenticated
subject), which call of the proxy's it resumes, the server's own `requestState` verbatim (None
when the server sent none) and when it stops being honoured; an HMAC under a per-process random
key seals all of it, so a client can neither forge a state, nor alter one it was given, nor
resume another subject's call with one. Opening a state gives the bookkeeping back, or the
reason it is refused (the JSON-RPC error a client gets).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any, Final, TypeGuard

from moorage_proxyrunner.protocol.jsonrpc import INVALID_PARAMS, Json

STATE_PREFIX: Final = "moorage."
"""States minted by this proxy start with this. With a 2026-07-28 backend every state a client
may hold is one of them, so the bridge refuses any other."""
MAX_STATE_CHARS: Final = 1 << 20
"""Longer states are refused unread: the server's own state would have to be absurdly large."""
_MAC_BYTES: Final = 16


@dataclass(frozen=True, slots=True)
class Bookkeeping:
    """What a sealed state says: the proxy's own fields and the server's state."""

    principal: str | None
    """The authenticated subject whose call it is (None: unauthenticated)."""
    call: str
    """The proxy's handle on the call the state resumes (a parked call's id)."""
    server_state: str | None
    """The server's own `requestState`, handed back to it unchanged on the retry."""
    expires: float
    """The clock reading (the sealer's clock) after which the state is refused."""


@dataclass(frozen=True, slots=True)
class StateRefusal:
    """Why a client's `requestState` is not honoured, as the JSON-RPC error it gets."""

    message: str
    code: int = INVALID_PARAMS


ALTERED: Final = StateRefusal("The requestState was altered or was not issued by this proxy")
FOREIGN: Final = StateRefusal("The requestState was issued for another client")
EXPIRED: Final = StateRefusal(
    "The requestState has expired; send the request again without requestState"
)


def is_sealed(state: object) -> TypeGuard[str]:
    """Whether a client's `requestState` claims to be one of the proxy's (it may still be
    forged; `StateSeal.open` decides)."""
    return isinstance(state, str) and state.startswith(STATE_PREFIX)


class StateSeal:
    """Seals and opens `requestState` values under one random key (per process)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)

    def seal(self, book: Bookkeeping) -> str:
        payload = json.dumps(
            [book.principal, book.call, book.server_state, book.expires],
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        body = _b64(payload)
        return f"{STATE_PREFIX}{body}.{self._mac(body)}"

    def open(self, state: Any, *, principal: str | None, now: float) -> Bookkeeping | StateRefusal:
        """The bookkeeping in `state`, for `principal` at `now`; a refusal when the state was
        not minted here (or was altered), was minted for another subject, or has expired."""
        if not is_sealed(state) or len(state) > MAX_STATE_CHARS:
            return ALTERED
        body, _, mac = state[len(STATE_PREFIX) :].rpartition(".")
        if not body or not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            return ALTERED
        book = _decode(body)
        if book is None:
            # Sealed by us but unreadable: only a change of format could do this.
            return ALTERED
        if book.principal != principal:
            return FOREIGN
        if now > book.expires:
            return EXPIRED
        return book

    def _mac(self, body: str) -> str:
        digest = hmac.new(self._key, body.encode(), hashlib.sha256).digest()[:_MAC_BYTES]
        return _b64(digest)


def wrap(
    result: Json, seal: StateSeal, *, principal: str | None, call: str, expires: float
) -> Json:
    """An `input_required` result for the client (in place; returned for chaining): the
    server's `requestState`, if any, sealed inside the proxy's, its input request keys as the
    server named them."""
    server_state = result.get("requestState")
    book = Bookkeeping(
        principal, call, server_state if isinstance(server_state, str) else None, expires
    )
    result["requestState"] = seal.seal(book)
    return result


def unwrap(
    params: Json, seal: StateSeal, *, principal: str | None, now: float
) -> Bookkeeping | StateRefusal:
    """A client's retry carrying the proxy's state: its params get the server's own
    `requestState` back (removed when the server sent none), in place; `inputResponses` stay
    under the server's keys as the client sent them."""
    opened = seal.open(params.get("requestState"), principal=principal, now=now)
    if isinstance(opened, StateRefusal):
        return opened
    if opened.server_state is None:
        params.pop("requestState", None)
    else:
        params["requestState"] = opened.server_state
    return opened


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _decode(body: str) -> Bookkeeping | None:
    try:
        fields = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(fields, list) or len(fields) != 4:
        return None
    principal, call, server_state, expires = fields
    if (
        not (principal is None or isinstance(principal, str))
        or not isinstance(call, str)
        or not (server_state is None or isinstance(server_state, str))
        or not isinstance(expires, int | float)
        or isinstance(expires, bool)
    ):
        return None
    return Bookkeeping(principal, call, server_state, float(expires))
