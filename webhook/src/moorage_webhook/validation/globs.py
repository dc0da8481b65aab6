"""Glob patterns of an MCPRegistry's `filter`: the syntax of Go's `path.Match`.

Pure: no I/O. Python's `fnmatch` accepts any string, so a pattern with an unclosed `[` would
silently match nothing; this checker rejects what `path.Match` rejects (`ErrBadPattern`):

    pattern := { term }
    term    := '*' | '?' | '[' ['^'] { range } ']' | c | '\\' c
    range   := c | '\\' c | lo '-' hi          (inside a class, c != '\\', '-', ']')
"""

from __future__ import annotations

from moorage_webhook.validation.verdict import quoted


class _BadPattern(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _class_char(pattern: str, i: int) -> int:
    """Consume one (possibly escaped) character of a class at `i`; the index after it."""
    if i >= len(pattern):
        raise _BadPattern("has a '[' that is never closed with ']'")
    if pattern[i] in "-]":
        raise _BadPattern(
            f"has an unescaped {quoted(pattern[i])} at position {i + 1} inside [...] (escape it with '\\')"
        )
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            raise _BadPattern("ends with an unfinished escape '\\'")
    i += 1
    if i >= len(pattern):
        raise _BadPattern("has a '[' that is never closed with ']'")
    return i


def glob_problem(pattern: str) -> str | None:
    """None when `pattern` is a valid glob; otherwise what is wrong with it."""
    if not pattern:
        return "must not be empty"
    i, n = 0, len(pattern)
    try:
        while i < n:
            char = pattern[i]
            if char == "\\":
                if i + 1 >= n:
                    raise _BadPattern("ends with an unfinished escape '\\'")
                i += 2
            elif char == "[":
                i += 1
                if i < n and pattern[i] == "^":
                    i += 1
                ranges = 0
                while True:
                    if i < n and pattern[i] == "]" and ranges > 0:
                        i += 1
                        break
                    i = _class_char(pattern, i)
                    if pattern[i] == "-":
                        i = _class_char(pattern, i + 1)
                    ranges += 1
            else:
                i += 1
    except _BadPattern as exc:
        return f"{quoted(pattern)} is not a valid glob: {exc.reason}"
    return None
