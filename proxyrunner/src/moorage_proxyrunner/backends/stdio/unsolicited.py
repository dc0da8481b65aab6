"""Where a server-to-client request sent outside any client request goes (pure: no I/O).

A shared stdio server may ask something when no client request is in flight: the "everything"
server asks `roots/list` as soon as the proxy has initialised it, before any client exists. A
direct client would be asked on its own stream; the proxy chooses what such a client would
expect:

- `roots/list` goes to a connected client that declared `roots` and has a stream open to
  receive it; with none, it is held until one connects (the server is waiting for roots, and
  the first client to bring some should answer);
- `sampling/createMessage` and `elicitation/create` go to a connected client that declared the
  capability and has a stream open; with none, they fail at once with an error that says so (a
  model call or a question to a person must not wait for whoever connects next);
- anything else is refused: the proxy knows no client that could answer it.

Among several candidates the session connected longest wins, so the choice is stable.
Modern (2026-07-28) clients never qualify: their wire has no server-to-client requests.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from moorage_proxyrunner.protocol import eras
from moorage_proxyrunner.protocol.jsonrpc import INTERNAL_ERROR, METHOD_NOT_FOUND, Json

HELD_METHODS: Final = frozenset({"roots/list"})
"""Requests worth holding until a client that can answer connects."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A connected client as this decision sees it (in order of connection)."""

    key: str
    capabilities: Json
    modern: bool
    stream_open: bool


@dataclass(frozen=True, slots=True)
class Deliver:
    key: str


@dataclass(frozen=True, slots=True)
class Hold:
    pass


@dataclass(frozen=True, slots=True)
class Refuse:
    code: int
    message: str


Route = Deliver | Hold | Refuse


def can_answer(candidate: Candidate, method: str) -> bool:
    """Whether this client can be sent `method` now (legacy, capable, stream open)."""
    capability = eras.CAPABILITY_FOR_SERVER_REQUEST.get(method)
    return (
        capability is not None
        and not candidate.modern
        and candidate.stream_open
        and eras.has_capability(candidate.capabilities, capability)
    )


def route_unsolicited(method: str, candidates: Iterable[Candidate]) -> Route:
    """The route of a server request no client request is in flight for; see the module."""
    capability = eras.CAPABILITY_FOR_SERVER_REQUEST.get(method)
    if capability is None:
        return Refuse(METHOD_NOT_FOUND, f"The proxy has no client to send {method} to")
    for candidate in candidates:
        if can_answer(candidate, method):
            return Deliver(candidate.key)
    if method in HELD_METHODS:
        return Hold()
    return Refuse(
        INTERNAL_ERROR,
        f"Cannot route {method} outside a client request: no connected client declared "
        f"the {capability} capability and has a stream open to receive it",
    )
