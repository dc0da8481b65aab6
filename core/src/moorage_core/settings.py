"""Helpers for reading settings from the environment and flags.

Pure: parsing only. Each component defines its own settings dataclass and uses these to fill it,
so that every setting is both an environment variable and a flag with one meaning: it describes
each setting with a `SettingSpec`, adds the flags with `add_setting_flags`, and gets the parsed
values with `read_settings` (a flag wins over its variable; a bad value raises `SettingError`
naming both).
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


class SettingError(ValueError):
    """A setting has a value we cannot use; the message names the setting."""


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration (`1h30m`, `90s`, `250ms`), or a plain number of seconds."""
    value = text.strip()
    if not value:
        raise SettingError("empty duration")
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # float() also reads "nan", "inf" and negatives: none is a duration.
        if not math.isfinite(seconds) or seconds < 0:
            raise SettingError(f"{text!r} is not a duration (expected e.g. 90s, 10m, 1h30m)")
        return seconds
    pos = 0
    total = 0.0
    for match in _DURATION.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(value) or pos == 0:
        raise SettingError(f"{text!r} is not a duration (expected e.g. 90s, 10m, 1h30m)")
    return total


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise SettingError(f"{text!r} is not a boolean (expected true or false)")


def parse_list(text: str) -> tuple[str, ...]:
    """A comma-separated list, blanks dropped, order kept, duplicates removed."""
    seen: dict[str, None] = {}
    for part in text.split(","):
        item = part.strip()
        if item:
            seen[item] = None
    return tuple(seen)


def parse_bind(text: str, *, default_host: str = "0.0.0.0") -> tuple[str, int]:  # noqa: S104
    """`HOST:PORT`, `:PORT` or `[v6]:PORT` into (host, port)."""
    value = text.strip()
    host, sep, port_text = value.rpartition(":")
    if not sep:
        raise SettingError(f"{text!r} is not HOST:PORT")
    try:
        port = int(port_text)
    except ValueError:
        raise SettingError(f"{text!r} has no numeric port") from None
    if not 0 <= port <= 65535:
        raise SettingError(f"{text!r}: port must be 0-65535")
    host = host.strip("[]") or default_host
    return host, port


def parse_positive_duration(text: str) -> float:
    """`parse_duration`, refusing zero and less."""
    value = parse_duration(text)
    if value <= 0:
        raise SettingError(f"{text!r} must be longer than zero")
    return value


def parse_whole_number(text: str, *, minimum: int, maximum: int | None = None) -> int:
    """An integer from `minimum` to `maximum` (no upper bound when None)."""
    try:
        value = int(text.strip())
    except ValueError:
        raise SettingError(f"{text!r} is not a whole number") from None
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and at most {maximum}"
        raise SettingError(f"{value} must be at least {minimum}{upper}")
    return value


def parse_directory(text: str) -> Path:
    """An existing directory."""
    path = Path(text.strip())
    if not path.is_dir():
        raise SettingError(f"{text!r} is not a directory")
    return path


def parse_choice(options: tuple[str, ...]) -> Callable[[str], str]:
    """A parser accepting one of `options` (lower-case), case-insensitively."""

    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in options:
            raise SettingError(f"{text!r} is not one of {', '.join(options)}")
        return value

    return parse


def env(name: str, default: str, *, environ: Mapping[str, str] | None = None) -> str:
    """`$name` or `default`; an empty variable counts as unset."""
    value = (environ if environ is not None else os.environ).get(name, "")
    return value if value != "" else default


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """One setting: the dataclass field it fills, its variable and flag, and how to parse it."""

    field: str
    env: str
    """Environment variable, e.g. `RESYNC_PERIOD`."""
    flag: str
    """Flag without dashes, e.g. `resync-period`."""
    parse: Callable[[str], Any]
    """Turns the text into the value; raises `SettingError` for a bad one."""
    metavar: str
    help: str


def add_setting_flags(parser: argparse.ArgumentParser, specs: Sequence[SettingSpec]) -> None:
    """Add a `--flag` per spec, defaulting to None so the environment can fill it."""
    for spec in specs:
        parser.add_argument(
            f"--{spec.flag}",
            dest=spec.field,
            metavar=spec.metavar,
            default=None,
            help=f"{spec.help} [env {spec.env}]",
        )


def read_settings(
    specs: Sequence[SettingSpec], *, args: Mapping[str, Any], environ: Mapping[str, str]
) -> dict[str, Any]:
    """Parsed values by field for the settings that were given (flags in `args` win over
    `environ`; empty values count as unset). A bad value raises `SettingError` naming the
    variable and the flag."""
    values: dict[str, Any] = {}
    for spec in specs:
        flag_value = args.get(spec.field)
        raw = flag_value if flag_value is not None else environ.get(spec.env, "")
        if raw == "":
            continue
        try:
            values[spec.field] = spec.parse(raw)
        except SettingError as exc:
            raise SettingError(f"{spec.env} (--{spec.flag}): {exc}") from None
    return values
