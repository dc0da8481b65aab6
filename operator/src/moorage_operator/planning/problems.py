"""Why an object cannot be run as specified: the problems planning reports in a status.

Pure: data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """Why an MCPServer or an MCPRemoteProxy cannot be run as specified."""

    condition: str | None
    """The condition type that reports it (None: only `Ready`); the MCPServer's and the
    MCPRemoteProxy's condition types share these names."""
    reason: str
    """CamelCase reason for that condition and `Ready`."""
    message: str
    """A sentence naming the object or field at fault."""
    missing: bool = False
    """A referenced object does not exist (yet); it is watched, so its arrival fixes this."""


def by_condition(problems: Iterable[Problem]) -> dict[str, Problem]:
    """The first problem per condition type, for the status."""
    found: dict[str, Problem] = {}
    for problem in problems:
        if problem.condition is not None:
            found.setdefault(problem.condition, problem)
    return found
