"""The registry API's settings: each a flag and an environment variable.

Pure: parsing and validation only. A flag wins over its variable; an empty variable counts as
unset. A value we cannot use raises `SettingError` naming the flag and the variable.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moorage_core.settings import SettingError, parse_choice, parse_duration

_LOG_FORMATS = ("json", "console", "auto")
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True, slots=True)
class RegistryServerSettings:
    """Everything `moorage-registry-api` is configured with."""

    data_dir: Path
    """--data-dir / REGISTRY_DATA_DIR: the directory holding `registry.json` (and
    `sync_metadata.json`), usually the mounted storage ConfigMap. Required."""
    host: str = "0.0.0.0"  # noqa: S104 - served to the cluster through the Service
    """--host / REGISTRY_API_HOST: address to listen on. Default all interfaces."""
    port: int = 8080
    """--port / REGISTRY_API_PORT: TCP port to listen on. Default 8080."""
    poll_interval: float = 2.0
    """--poll-interval / REGISTRY_POLL_INTERVAL: seconds (Go duration accepted) between checks
    of the data files for changes. Default 2s."""
    drain_timeout: float = 5.0
    """--drain-timeout / DRAIN_TIMEOUT: seconds SIGTERM lets requests in flight finish (Go
    duration accepted). Default 5s."""
    log_format: str = "auto"
    """--log-format / LOG_FORMAT: json, console or auto (console on a TTY). Default auto."""
    log_level: str = "info"
    """--log-level / LOG_LEVEL: debug, info, warning, error or critical. Default info."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moorage-registry-api",
        description="Serves an MCPRegistry's synced data: GET /v0/servers, "
        "GET /v0/servers/{name}, GET /health, GET /metrics.",
    )
    parser.add_argument("--data-dir", metavar="DIR", help="data directory [env REGISTRY_DATA_DIR]")
    parser.add_argument("--host", metavar="HOST", help="listen address [env REGISTRY_API_HOST]")
    parser.add_argument("--port", metavar="PORT", help="listen port [env REGISTRY_API_PORT]")
    parser.add_argument(
        "--poll-interval",
        metavar="DURATION",
        help="how often to check the data for changes, e.g. 2s [env REGISTRY_POLL_INTERVAL]",
    )
    parser.add_argument(
        "--drain-timeout",
        metavar="DURATION",
        help="how long SIGTERM lets requests in flight finish, e.g. 5s [env DRAIN_TIMEOUT]",
    )
    parser.add_argument(
        "--log-format", metavar="FORMAT", help="json, console or auto [env LOG_FORMAT]"
    )
    parser.add_argument("--log-level", metavar="LEVEL", help="debug ... critical [env LOG_LEVEL]")
    return parser


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise SettingError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise SettingError(f"{value} is not a port number (0-65535)")
    return value


def _interval(text: str) -> float:
    value = parse_duration(text)
    if value <= 0:
        raise SettingError(f"{text!r} must be longer than zero")
    return value


_OPTIONAL: tuple[tuple[str, str, str, Callable[[str], Any]], ...] = (
    ("host", "host", "REGISTRY_API_HOST", str.strip),
    ("port", "port", "REGISTRY_API_PORT", _port),
    ("poll_interval", "poll-interval", "REGISTRY_POLL_INTERVAL", _interval),
    ("drain_timeout", "drain-timeout", "DRAIN_TIMEOUT", _interval),
    ("log_format", "log-format", "LOG_FORMAT", parse_choice(_LOG_FORMATS)),
    ("log_level", "log-level", "LOG_LEVEL", parse_choice(_LOG_LEVELS)),
)
"""(field, flag, variable, parser) of every setting with a default."""


def parse_settings(
    argv: Sequence[str], *, environ: Mapping[str, str] | None = None
) -> RegistryServerSettings:
    """Settings from `environ` (default `os.environ`) and the flags in `argv`."""
    env = os.environ if environ is None else environ
    args = vars(build_parser().parse_args(list(argv)))
    data_dir = args["data_dir"] or env.get("REGISTRY_DATA_DIR", "")
    if not data_dir:
        raise SettingError("REGISTRY_DATA_DIR (--data-dir): required")
    values: dict[str, Any] = {}
    for field, flag, name, parse in _OPTIONAL:
        raw = args[field] or env.get(name, "")
        if not raw:
            continue
        try:
            values[field] = parse(raw)
        except SettingError as exc:
            raise SettingError(f"{name} (--{flag}): {exc}") from None
    return RegistryServerSettings(data_dir=Path(data_dir), **values)
