"""The outcome of validating one object: errors that reject it and warnings that do not.

Pure: no I/O. Rules report into a `Findings` while they walk an object; `Findings.verdict()`
freezes the result. Every problem carries the field path it is about (`spec.env[2].name`,
`spec.toolsOverride[fetch].name`) so that the message a person reads tells them where to look.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

MAX_REPORTED: int = 20
"""At most this many errors (and as many warnings) are kept; the rest are only counted."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: the field path it is about and what is expected there."""

    path: str
    """Field path in the object, `spec.containers[0].image` style; never empty."""
    message: str
    """What is wrong and what is expected, without the path."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """Errors reject the object; warnings are shown to the client but let it through."""

    errors: tuple[Problem, ...] = ()
    warnings: tuple[Problem, ...] = ()
    omitted_errors: int = 0
    """Errors found beyond `MAX_REPORTED` and not listed in `errors`."""

    @property
    def allowed(self) -> bool:
        return not self.errors and not self.omitted_errors

    def message(self) -> str:
        """All errors in one line, as the client shows it after "denied the request: "."""
        parts = [str(e) for e in self.errors]
        if self.omitted_errors:
            parts.append(f"and {self.omitted_errors} more")
        return "; ".join(parts)

    def warning_texts(self) -> list[str]:
        return [str(w) for w in self.warnings]

    def with_errors(self, problems: Iterable[Problem]) -> Verdict:
        """This verdict with `problems` added after its errors (beyond the limit: counted)."""
        added = tuple(problems)
        room = max(0, MAX_REPORTED - len(self.errors))
        return Verdict(
            errors=self.errors + added[:room],
            warnings=self.warnings,
            omitted_errors=self.omitted_errors + len(added[room:]),
        )


@dataclass(slots=True)
class Findings:
    """A mutable collector the rules write into; not shared between validations."""

    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    omitted_errors: int = 0
    limit: int | None = MAX_REPORTED
    """How many errors and warnings are kept; None keeps all (for findings replayed later)."""

    def error(self, path: str, message: str) -> None:
        if self.limit is None or len(self.errors) < self.limit:
            self.errors.append(Problem(path, message))
        else:
            self.omitted_errors += 1

    def warn(self, path: str, message: str) -> None:
        problem = Problem(path, message)
        if (self.limit is None or len(self.warnings) < self.limit) and problem not in self.warnings:
            self.warnings.append(problem)

    def verdict(self) -> Verdict:
        return Verdict(
            errors=tuple(self.errors),
            warnings=tuple(self.warnings),
            omitted_errors=self.omitted_errors,
        )


def key_path(path: str, key: str) -> str:
    """The path of a map entry: `metadata.labels[app]`, as Kubernetes field errors spell it."""
    return f"{path}[{key}]"


def quoted(value: object) -> str:
    """`value` in double quotes, as Kubernetes messages quote values (like Go's %q)."""
    return json.dumps(str(value), ensure_ascii=False)
