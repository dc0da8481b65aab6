"""What a Dockerfile and a `.dockerignore` say, read without building anything.

Pure: text in, values out; no I/O. The image builder uses these to key its cache on exactly what
reaches an image (the files `COPY`/`ADD` take from the build context, minus what `.dockerignore`
leaves out) and to read versions a Dockerfile pins in its `ARG` defaults, so that a version is
written once, in the Dockerfile.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

_CONTEXT_INSTRUCTIONS = ("COPY", "ADD")


def logical_lines(text: str) -> list[str]:
    """The Dockerfile's instructions, one per entry: continuations joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            # Comment lines inside a continued instruction are skipped, as Docker does.
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        lines.append((pending + stripped).strip())
        pending = ""
    if pending.strip():
        lines.append(pending.strip())
    return lines


def _instruction(line: str) -> tuple[str, str]:
    keyword, _, rest = line.partition(" ")
    return keyword.upper(), rest.strip()


def global_arg_defaults(text: str) -> dict[str, str]:
    """The defaults of the `ARG`s declared before the first `FROM` (the ones `FROM` may use)."""
    defaults: dict[str, str] = {}
    for line in logical_lines(text):
        keyword, rest = _instruction(line)
        if keyword == "FROM":
            break
        if keyword != "ARG":
            continue
        for token in shlex.split(rest):
            name, sep, value = token.partition("=")
            if sep:
                defaults[name] = value
    return defaults


def context_sources(text: str) -> list[str]:
    """The build-context paths `COPY` and `ADD` read (not those copied `--from` another stage).

    Sources keep their order of first appearance and appear once.
    """
    sources: list[str] = []
    for line in logical_lines(text):
        keyword, rest = _instruction(line)
        if keyword not in _CONTEXT_INSTRUCTIONS:
            continue
        tokens = shlex.split(rest)
        flags = [t for t in tokens if t.startswith("--")]
        if any(flag.startswith("--from=") for flag in flags):
            continue
        paths = [t for t in tokens if not t.startswith("--")]
        for source in paths[:-1]:
            normalised = source.removeprefix("./").rstrip("/") or "."
            if normalised not in sources:
                sources.append(normalised)
    return sources


@dataclass(frozen=True, slots=True)
class IgnoreRule:
    """One `.dockerignore` line: a compiled pattern and whether it re-includes (`!`)."""

    pattern: re.Pattern[str]
    negated: bool


def _translate(pattern: str) -> re.Pattern[str]:
    """Docker's matching: `**` spans directories, `*` and `?` stay within one path element."""
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
            continue
        if pattern.startswith("**", index):
            out.append(".*")
            index += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(char))
        index += 1
    return re.compile("".join(out) + r"\Z")


def parse_dockerignore(text: str) -> list[IgnoreRule]:
    rules: list[IgnoreRule] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        body = line[1:].strip() if negated else line
        body = body.removeprefix("./").removeprefix("/").rstrip("/")
        if body:
            rules.append(IgnoreRule(pattern=_translate(body), negated=negated))
    return rules


def is_ignored(path: str, rules: Sequence[IgnoreRule]) -> bool:
    """Whether `.dockerignore` keeps the context-relative `path` out of the build.

    A pattern that matches a directory excludes everything below it; the last matching rule wins.
    """
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for rule in rules:
        if any(rule.pattern.match(prefix) for prefix in prefixes):
            ignored = not rule.negated
    return ignored
