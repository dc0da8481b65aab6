"""Reading docker/Dockerfile and .dockerignore as text, for the tests (no Docker engine).

`stages()` parses a Dockerfile into named stages of instructions (continuation lines joined,
flags such as `--from=` and `--mount=` split off); `chain()` follows a target through the stages
it builds on. `ignore_patterns()`/`is_ignored()` apply .dockerignore the way Docker does: a
pattern matches a path or any of its parent folders, `**` spans folders, and the last matching
line wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "docker" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    flags: tuple[str, ...]
    args: str


@dataclass(slots=True)
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)


def instructions(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined, comments and blank lines dropped."""
    result: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        keyword, _, rest = whole.partition(" ")
        flags: list[str] = []
        rest = rest.strip()
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            flags.append(flag)
            rest = rest.strip()
        result.append(Instruction(keyword.upper(), tuple(flags), rest))
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


def stages(text: str) -> dict[str, Stage]:
    found: dict[str, Stage] = {}
    current: Stage | None = None
    for ins in instructions(text):
        if ins.keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", ins.args, flags=re.IGNORECASE)
            assert match, ins.args
            base, name = match.group(1), match.group(2) or f"stage-{len(found)}"
            current = found[name] = Stage(name=name, base=base)
        elif current is not None:
            current.instructions.append(ins)
    return found


def chain(all_stages: dict[str, Stage], target: str) -> list[Stage]:
    """The stages `target` builds on, the oldest first."""
    result = [all_stages[target]]
    while result[0].base in all_stages:
        result.insert(0, all_stages[result[0].base])
    return result


def last(stages_: list[Stage], keyword: str) -> Instruction | None:
    found = [i for s in stages_ for i in s.instructions if i.keyword == keyword]
    return found[-1] if found else None


def ignore_patterns(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(exclude?, regex) per .dockerignore line, in order (the last match wins)."""
    patterns: list[tuple[bool, re.Pattern[str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        patterns.append((not include, re.compile(regex)))
    return patterns


def is_ignored(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: a pattern matches a path or any of its parent folders; the last wins."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for exclude, regex in patterns:
        if any(regex.fullmatch(p) for p in prefixes):
            ignored = exclude
    return ignored


def context_copies(all_stages: dict[str, Stage]) -> list[str]:
    """Sources of every COPY/ADD that reads the build context (not another stage or image)."""
    sources: list[str] = []
    for stage in all_stages.values():
        for ins in stage.instructions:
            if ins.keyword not in ("COPY", "ADD"):
                continue
            if any(f.startswith("--from=") for f in ins.flags):
                continue
            assert not ins.args.startswith("["), "use the plain form of COPY"
            *srcs, _dest = ins.args.split()
            sources.extend(srcs)
    return sources
