"""The shared stdio server's log level: the most verbose one any client asked for.

Each legacy session sets its own level (`logging/setLevel`) and each modern request carries
one (`logLevel`); the server has one level for all of them, so it is asked for the most
verbose, and the bridge filters what each client sees by that client's own level.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from moorage_proxyrunner.backends.stdio.peers import Peer
from moorage_proxyrunner.protocol import eras


class LogLevels:
    """Decides when to ask the server for another log level."""

    def __init__(self, *, can_set: Callable[[], bool], send: Callable[[str], None]) -> None:
        self._can_set = can_set
        """Whether the server can be asked now (it is connected and declares `logging`)."""
        self._send = send
        """Asks the server for a level (`logging/setLevel`), without waiting for its answer."""
        self.backend_level: str | None = None
        """The level last asked of the current server process; None until one is. Invariant:
        while the server can be asked, it is at least as verbose as every legacy peer's
        level and as the level of each modern request sent to it."""

    def reset(self) -> None:
        """A fresh server process: it has been asked nothing yet."""
        self.backend_level = None

    def apply(self, peers: Iterable[Peer]) -> None:
        """Ask for the most verbose level the legacy peers hold, when it changed."""
        levels = [p.log_level for p in peers if p.log_level and not p.modern]
        wanted = min(levels, key=lambda lvl: eras.log_rank(lvl) or 0) if levels else None
        if wanted is not None and wanted != self.backend_level:
            self._set(wanted)

    def lower(self, level: str) -> None:
        """Make the server at least as verbose as `level` (a modern request's)."""
        current = eras.log_rank(self.backend_level)
        wanted = eras.log_rank(level)
        if wanted is not None and (current is None or wanted < current):
            self._set(level)

    def _set(self, level: str) -> None:
        if not self._can_set():
            return
        self.backend_level = level
        self._send(level)
