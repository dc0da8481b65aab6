"""Fair sharing of one stdio MCP server between sessions.

A stdio server reads its stdin in order: whatever was written first is read (and, for most
servers, started) first. Fairness here therefore means fairness of *admission*: which request
is written next. Two bounds decide it:

- per key (a legacy session; on the 2026-07-28 wire, an authenticated subject, or each
  anonymous request on its own): at most `per_key` requests waiting or at the server. One more
  is refused at once (`GateFull`) rather than queued, so a flooding client holds a bounded
  share of memory and of the server's queue;
- in total: at most `total` requests at the server. Past it requests wait, and each freed slot
  goes to the waiting key served least recently (round-robin over the keys with requests
  waiting, each key's own requests first-in first-out). A session that queued a hundred
  requests gets one written, then the other session's one, and so on: the other's call is at
  most one of the flooder's requests per turn behind, not a hundred.

What the server does with the lines it has read (runs them concurrently, or one by one) is its
own affair; the proxy bounds how much of that queue one client can occupy.

`RoundRobin` is the bookkeeping (pure, no asyncio); `FairGate` puts futures on it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Ticket = TypeVar("Ticket", bound=Hashable)


class GateFull(Exception):
    """The key already holds its share of requests."""


@dataclass(slots=True)
class RoundRobin(Generic[Ticket]):
    """Who may go next. Invariants: `admitted` ≤ `total` (once any key has waited);
    `held[key]` counts the key's admitted and waiting tickets, ≤ `per_key`, and a key is in
    `held` only while that is positive; `waiting` holds only keys with tickets waiting, in the
    order they first waited; `served[key]` is the turn number of the key's latest admission,
    kept while the key is in `held`."""

    per_key: int
    total: int
    admitted: int = 0
    held: dict[str, int] = field(default_factory=dict)
    waiting: dict[str, deque[Ticket]] = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=dict)
    turn: int = 0

    def enter(self, key: str, ticket: Ticket) -> bool:
        """Admit `ticket` now (True) or queue it (False); `GateFull` when the key is full."""
        if self.held.get(key, 0) >= self.per_key:
            raise GateFull(key)
        self.held[key] = self.held.get(key, 0) + 1
        if self.admitted < self.total and not self.waiting:
            self._admit(key)
            return True
        self.waiting.setdefault(key, deque()).append(ticket)
        return False

    def leave(self, key: str) -> tuple[str, Ticket] | None:
        """An admitted ticket of `key` is done; the (key, ticket) admitted in its place."""
        self.admitted -= 1
        self._drop(key)
        if not self.waiting or self.admitted >= self.total:
            return None
        # The key served least recently; one never served counts as oldest.
        next_key = min(self.waiting, key=lambda k: self.served.get(k, -1))
        queue = self.waiting[next_key]
        ticket = queue.popleft()
        if not queue:
            del self.waiting[next_key]
        self._admit(next_key)
        return next_key, ticket

    def _admit(self, key: str) -> None:
        self.admitted += 1
        self.served[key] = self.turn
        self.turn += 1

    def withdraw(self, key: str, ticket: Ticket) -> bool:
        """Take a waiting ticket back (its owner gave up); False when it was not waiting."""
        queue = self.waiting.get(key)
        if queue is None or ticket not in queue:
            return False
        queue.remove(ticket)
        if not queue:
            del self.waiting[key]
        self._drop(key)
        return True

    def _drop(self, key: str) -> None:
        count = self.held.get(key, 0) - 1
        if count > 0:
            self.held[key] = count
        else:
            self.held.pop(key, None)
            self.served.pop(key, None)


class FairGate:
    """`async with gate.slot(key):` holds one of the server's slots for one request."""

    def __init__(self, *, per_key: int, total: int) -> None:
        self._turns: RoundRobin[asyncio.Future[None]] = RoundRobin(per_key, total)

    @property
    def admitted(self) -> int:
        return self._turns.admitted

    @property
    def waiting(self) -> int:
        return sum(len(queue) for queue in self._turns.waiting.values())

    @contextlib.asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        """Wait for the key's turn (`GateFull` at once when it holds `per_key` already)."""
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self._turns.enter(key, turn):
            try:
                await turn
            except asyncio.CancelledError:
                if turn.cancelled():
                    # Still waiting, or already passed over by `_release`: nothing to give back.
                    self._turns.withdraw(key, turn)
                else:
                    self._release(key)  # admitted just as the waiter was cancelled
                raise
        try:
            yield
        finally:
            self._release(key)

    def _release(self, key: str) -> None:
        successor = self._turns.leave(key)
        while successor is not None:
            next_key, turn = successor
            if not turn.done():
                turn.set_result(None)
                return
            # Its waiter was cancelled and has not withdrawn yet: pass the slot on.
            successor = self._turns.leave(next_key)
