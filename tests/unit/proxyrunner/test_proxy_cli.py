"""The command line: options before `--`, the server's command after it, clear refusals."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from moorage_core.settings import SettingError
from moorage_proxyrunner.__main__ import (
    build_parser,
    local_backend,
    local_config,
    settings_from,
    split_command,
)
from moorage_proxyrunner.startup.local import LocalBackend


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    options, command = split_command(argv)
    parser, _ = build_parser()
    return parser.parse_args(options), command


def test_the_command_after_double_dash_is_the_stdio_server() -> None:
    args, command = parse(
        [
            "run",
            "--local",
            "--port",
            "9000",
            "--",
            "uvx",
            "mcp-server-time",
            "--local-timezone",
            "UTC",
        ]
    )
    assert local_backend(args, command) == LocalBackend(
        transport="stdio", command=("uvx", "mcp-server-time", "--local-timezone", "UTC")
    )
    settings = settings_from(args)
    assert (settings.host, settings.port, settings.max_body_bytes) == (
        "127.0.0.1",
        9000,
        8 * 1024 * 1024,
    )


def test_an_http_backend_takes_target_urls() -> None:
    args, command = parse(
        [
            "run",
            "--local",
            "--transport",
            "sse",
            "--target-url",
            "http://127.0.0.1:1/sse",
            "--target-url",
            "http://127.0.0.1:2/sse",
        ]
    )
    assert local_backend(args, command).target_urls == (
        "http://127.0.0.1:1/sse",
        "http://127.0.0.1:2/sse",
    )


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["run", "--local"], "needs its command"),
        (["run", "--local", "--target-url", "http://x", "--", "srv"], "--target-url is for"),
        (["run", "--local", "--transport", "streamable-http"], "needs --target-url"),
        (
            ["run", "--local", "--transport", "sse", "--target-url", "http://x", "--", "srv"],
            "not a command",
        ),
    ],
    ids=["no-command", "url-with-stdio", "http-without-url", "command-with-http"],
)
def test_inconsistent_backends_are_refused(argv: list[str], complaint: str) -> None:
    args, command = parse(argv)
    with pytest.raises(SettingError, match=complaint):
        local_backend(args, command)


def test_tools_filter_and_origins_become_settings() -> None:
    args, _ = parse(
        [
            "run",
            "--local",
            "--tools-filter",
            "a, b",
            "--allowed-origins",
            "https://x.example",
            "--",
            "s",
        ]
    )
    settings = settings_from(args)
    assert settings.tool_policy.allowed == frozenset({"a", "b"})
    assert settings.allowed_origins == ("https://x.example",)


@pytest.mark.parametrize(("flags", "era"), [([], "handshake"), (["--stdio-era", "auto"], "auto")])
def test_the_stdio_era_is_handshake_unless_probing_is_asked_for(flags: list[str], era: str) -> None:
    args, _ = parse(["run", "--local", *flags, "--", "s"])
    assert settings_from(args).stdio_era == era


def test_a_runconfig_naming_a_remote_is_the_backend(tmp_path: Path) -> None:
    path = tmp_path / "runconfig.json"
    path.write_text(
        json.dumps(
            {
                "schema_version": "moorage/v1",
                "remote": {"url": "https://mcp.example.com/sse", "transport": "sse"},
            }
        )
    )
    args, command = parse(["run", "--local", "--config", str(path)])
    config = local_config(args)
    assert config is not None
    assert local_backend(args, command, config) == LocalBackend(
        transport="sse", target_urls=("https://mcp.example.com/sse",)
    )
    args, command = parse(["run", "--local", "--config", str(path), "--", "srv"])
    with pytest.raises(SettingError, match="names a remote MCP server"):
        local_backend(args, command, config)
