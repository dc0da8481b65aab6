"""The one `go build` every cached binary goes through, run for real on a tiny module."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from moorage_dev.binaries import BinaryError, go_binary, go_build, go_module

MAIN_GO = """package main

import "fmt"

var version = "unset"

func main() { fmt.Println(version, flavour) }
"""
TAGGED_GO = '//go:build special\n\npackage main\n\nconst flavour = "special"\n'
PLAIN_GO = '//go:build !special\n\npackage main\n\nconst flavour = "plain"\n'
FILES = {
    "go.mod": "module moorage.dev/gobuildtest\n\ngo 1.24\n",
    "main.go": MAIN_GO,
    "tagged.go": TAGGED_GO,
    "plain.go": PLAIN_GO,
}


def _build(tmp_path: Path, **options: str) -> str:
    go = go_binary()
    reports: list[str] = []
    out = tmp_path / "hello"
    with go_module(go, name="gobuildtest", files=FILES, what="test", report=reports.append) as work:
        go_build(
            go,
            work,
            out=str(out),
            targets=["."],
            what="build test",
            report=reports.append,
            **options,
        )
    assert [r.split(":")[0] for r in reports] == ["resolve test", "build test"]
    return subprocess.run([str(out)], capture_output=True, text=True, check=True).stdout.strip()


def test_a_plain_build_runs(tmp_path: Path) -> None:
    assert _build(tmp_path) == "unset plain"


def test_ldflags_and_tags_reach_the_compiler(tmp_path: Path) -> None:
    output = _build(tmp_path, ldflags="-s -w -X main.version=v1.2.3", tags="special")
    assert output == "v1.2.3 special"


def test_a_failing_build_names_what_failed_and_the_compiler_message(tmp_path: Path) -> None:
    go = go_binary()
    broken = {**FILES, "main.go": MAIN_GO.replace("fmt.Println", "fmt.Printn")}
    with (
        go_module(go, name="gobuildtest", files=broken, what="test", report=lambda _: None) as work,
        pytest.raises(
            BinaryError,
            match=r"(?s)build broken failed: go build -trimpath -o .*undefined: fmt.Printn",
        ),
    ):
        go_build(
            go,
            work,
            out=str(tmp_path / "x"),
            targets=["."],
            what="build broken",
            report=lambda _: None,
        )
