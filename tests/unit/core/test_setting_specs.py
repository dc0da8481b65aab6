"""Settings described by `SettingSpec`: flags added, flags over variables, errors naming both."""

from __future__ import annotations

import argparse

import pytest

from moorage_core.settings import (
    SettingError,
    SettingSpec,
    add_setting_flags,
    parse_bool,
    parse_duration,
    read_settings,
)

SPECS = (
    SettingSpec("period", "PERIOD", "period", parse_duration, "DURATION", "how often"),
    SettingSpec("enabled", "ENABLED", "enabled", parse_bool, "BOOL", "on or off"),
)


def parse(argv: list[str], environ: dict[str, str]) -> dict[str, object]:
    parser = argparse.ArgumentParser()
    add_setting_flags(parser, SPECS)
    return read_settings(SPECS, args=vars(parser.parse_args(argv)), environ=environ)


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        ([], {}, {}),
        ([], {"PERIOD": "1m", "ENABLED": "yes"}, {"period": 60.0, "enabled": True}),
        (["--period", "2s"], {"PERIOD": "1m"}, {"period": 2.0}),
        ([], {"PERIOD": "", "ENABLED": ""}, {}),
        (["--enabled=false"], {}, {"enabled": False}),
    ],
    ids=["nothing", "environment", "flag-wins", "empty-is-unset", "flag-only"],
)
def test_values_come_from_flags_then_the_environment(
    argv: list[str], environ: dict[str, str], expected: dict[str, object]
) -> None:
    assert parse(argv, environ) == expected


@pytest.mark.parametrize(
    ("argv", "environ"), [([], {"PERIOD": "soon"}), (["--period", "soon"], {"PERIOD": "1s"})]
)
def test_a_bad_value_names_the_variable_and_the_flag(
    argv: list[str], environ: dict[str, str]
) -> None:
    with pytest.raises(SettingError, match=r"^PERIOD \(--period\): 'soon' is not a duration"):
        parse(argv, environ)


def test_help_names_the_variable() -> None:
    parser = argparse.ArgumentParser()
    add_setting_flags(parser, SPECS)
    assert "[env PERIOD]" in parser.format_help()
