"""`moorage-proxyrunner run --local` that cannot start says what to change, exits, and never
hangs — the port, the MCP server command — and SIGTERM ends it at any stage."""

from __future__ import annotations

import sys

import pytest
from testkit.commands import (
    assert_clean_failure,
    assert_clean_stop,
    free_port,
    port_in_use,
    run_command,
    terminate_when,
)

pytestmark = pytest.mark.e2e

PROXY = "moorage_proxyrunner"
SILENT_SERVER = (sys.executable, "-c", "import sys; sys.stdin.read()")
"""Reads what it is sent and never answers; ends when its stdin closes."""


def test_a_port_in_use_names_the_port() -> None:
    with port_in_use() as port:
        outcome = run_command(
            PROXY, "run", "--local", "--port", str(port), "--", sys.executable, "-m", "this"
        )
    assert_clean_failure(
        outcome, code=1, setting="--host / --port", problem=f"127.0.0.1:{port} is in use"
    )


def test_a_command_that_does_not_exist_is_named() -> None:
    outcome = run_command(
        PROXY, "run", "--local", "--port", str(free_port()), "--", "no-such-mcp-server"
    )
    assert_clean_failure(
        outcome,
        code=2,
        setting="the MCP server command (after --)",
        problem="'no-such-mcp-server' was not found or is not executable",
    )


def test_a_command_that_exits_at_once_is_named() -> None:
    outcome = run_command(
        PROXY,
        "run",
        "--local",
        "--port",
        str(free_port()),
        "--",
        sys.executable,
        "-c",
        "raise SystemExit(3)",
    )
    assert_clean_failure(
        outcome,
        code=2,
        setting="the MCP server command (after --)",
        problem="exited with code 3 before answering",
    )


def test_sigterm_while_the_server_starts_exits_within_the_drain_timeout() -> None:
    outcome, waited = terminate_when(
        PROXY,
        "run",
        "--local",
        "--port",
        str(free_port()),
        "--drain-timeout",
        "3",
        "--",
        *SILENT_SERVER,
        ready="backend_process_started",
    )
    assert_clean_stop(outcome, waited, within=3.0, event="stopped_during_startup")
