"""`moorage-dev convert -f their.yaml`: the incumbent operator's manifests rewritten as Moorage's.

The thin shell of `moorage_dev.converting`: reads the manifest (a file or `-` for stdin), writes
Moorage's documents as YAML (stdout, or `-o`), and lists on stderr every field and resource that
was not carried over, so that nothing is lost without a word. Exit status 0 when everything was
carried over, 3 when something was left behind (the output is written either way), 2 when the
input cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Final, TextIO

import yaml

from moorage_dev.converting import Conversion, convert_documents

EXIT_LEFT_BEHIND: Final = 3
EXIT_UNREADABLE: Final = 2


def add_convert_command(sub: Any) -> None:
    """Add `convert` to the `moorage-dev` subcommands."""
    convert = sub.add_parser(
        "convert",
        help="rewrite ToolHive operator resources (toolhive.stacklok.dev) into Moorage's",
    )
    convert.add_argument(
        "-f", "--filename", required=True, help="the manifest to convert; - reads stdin"
    )
    convert.add_argument(
        "-o", "--output", type=Path, default=None, help="where to write (default: stdout)"
    )


def render_report(conversion: Conversion) -> str:
    """What the user reads on stderr: a count, then one line per field not carried over."""
    lines = [f"converted {len(conversion.documents)} document(s)"]
    if conversion.dropped:
        lines.append(f"not carried over ({len(conversion.dropped)}):")
        lines += [f"  {dropped}" for dropped in conversion.dropped]
    else:
        lines.append("every field was carried over")
    return "\n".join(lines) + "\n"


def _read(filename: str, stdin: TextIO) -> list[Any]:
    text = stdin.read() if filename == "-" else Path(filename).read_text(encoding="utf-8")
    return list(yaml.safe_load_all(text))


def run_convert_command(args: argparse.Namespace, *, stdin: TextIO = sys.stdin) -> int:
    try:
        documents = _read(args.filename, stdin)
    except (OSError, yaml.YAMLError) as exc:
        print(f"moorage-dev convert: cannot read {args.filename}: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    conversion = convert_documents(documents)
    text = yaml.safe_dump_all(conversion.documents, sort_keys=False)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    sys.stderr.write(render_report(conversion))
    return EXIT_LEFT_BEHIND if conversion.dropped else 0
