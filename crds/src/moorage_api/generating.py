"""Writing and checking generated files, shared by `crdgen` and `docgen`.

Generated files are committed; CI runs the generators with `--check`, which fails when the
committed text differs from what the models produce now. Only these two command-line tools do file
I/O in this package, and only through here.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parents[3]
"""The checkout this package lives in (crds/src/moorage_api → repository root)."""
_DIFF_LINES: Final = 60


def differences(files: Mapping[Path, str]) -> list[str]:
    """A unified diff (abridged) per file whose committed text differs from `files`."""
    problems: list[str] = []
    for path, wanted in sorted(files.items()):
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current == wanted:
            continue
        diff = list(
            difflib.unified_diff(
                current.splitlines(keepends=True),
                wanted.splitlines(keepends=True),
                fromfile=f"{path} (committed)",
                tofile=f"{path} (generated)",
            )
        )
        if len(diff) > _DIFF_LINES:
            diff = [*diff[:_DIFF_LINES], f"... {len(diff) - _DIFF_LINES} more diff lines\n"]
        problems.append("".join(diff) if path.exists() else f"{path}: missing\n")
    return problems


def write_files(files: Mapping[Path, str]) -> list[Path]:
    """Write the files that changed; returns them."""
    written: list[Path] = []
    for path, text in sorted(files.items()):
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def run_generator(
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str,
    default_output: Path,
    render: Callable[[Path], dict[Path, str]],
    stale: Callable[[Path, dict[Path, str]], list[Path]] = lambda _output, _files: [],
) -> int:
    """The command line of a generator: write the files, or with `--check` compare them."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 when the committed files differ from the generated ones",
    )
    parser.add_argument(
        "--output", type=Path, default=default_output, help=f"default: {default_output}"
    )
    args = parser.parse_args(argv)
    output: Path = args.output
    files = render(output)
    leftovers = stale(output, files)
    if args.check:
        problems = differences(files) + [f"{path}: not generated any more\n" for path in leftovers]
        for problem in problems:
            sys.stdout.write(problem)
        if problems:
            sys.stdout.write(f"{prog}: generated files are out of date; run `python -m {prog}`\n")
            return 1
        return 0
    for path in write_files(files):
        sys.stdout.write(f"wrote {path}\n")
    for path in leftovers:
        path.unlink()
        sys.stdout.write(f"removed {path}\n")
    return 0
