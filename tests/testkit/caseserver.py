"""The case-insensitive Go MCP server of tests/fixtures/caseserver, built once and cached.

Its JSON decoding is Go's `encoding/json` (keys matched case-insensitively, the last one
winning), the kind of server a case-variant key would fool. It is built with the local Go
toolchain into the cache (`moorage_dev.binaries.cache_root()`), keyed by a hash of its source,
so a changed source builds anew and an unchanged one never builds twice.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from moorage_dev.binaries import build_once, cache_root, go_build

SOURCE = Path(__file__).resolve().parents[1] / "fixtures" / "caseserver"
NAME = "caseserver"


def _source_key() -> str:
    digest = hashlib.sha256()
    for path in sorted(SOURCE.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def caseserver_binary() -> Path:
    """The built server (built on first use; `BinaryError` naming the failure)."""
    directory = cache_root() / "test-fixtures" / NAME / _source_key()
    binary = directory / NAME

    def build(go: str, staging: Path) -> None:
        go_build(
            go,
            SOURCE,
            out=str(staging / NAME),
            targets=["."],
            what="build the caseserver test fixture",
            report=lambda _: None,
        )

    build_once(
        directory,
        what="the caseserver test fixture",
        complete=binary.is_file,
        build=build,
        into=directory,
        names=(NAME,),
        report=lambda _: None,
    )
    return binary
