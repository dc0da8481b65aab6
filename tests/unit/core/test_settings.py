"""Parsing of settings values: durations, booleans, lists, bind addresses."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage_core.settings import (
    SettingError,
    env,
    parse_bind,
    parse_bool,
    parse_duration,
    parse_list,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("1.5", 1.5),
        ("90s", 90.0),
        ("10m", 600.0),
        ("10h", 36000.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("1m0.5s", 60.5),
    ],
    ids=str,
)
def test_parses_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "  ", "10x", "h", "1h 30m", "-5m", "-5", "nan", "inf", "1.2.3s", "m10"], ids=repr
)
def test_rejects_bad_durations_naming_the_value(text: str) -> None:
    with pytest.raises(SettingError):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=59))
def test_duration_hours_and_minutes_add_up(hours: int, minutes: int) -> None:
    assert parse_duration(f"{hours}h{minutes}m") == hours * 3600 + minutes * 60


@given(st.text(max_size=20))
def test_duration_parser_never_fails_other_than_with_a_setting_error(text: str) -> None:
    try:
        value = parse_duration(text)
    except SettingError:
        return
    assert math.isfinite(value)
    assert value >= 0


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("1", True),
        ("YES", True),
        ("on", True),
        ("false", False),
        ("0", False),
        ("", False),
    ],
)
def test_parses_booleans(text: str, value: bool) -> None:
    assert parse_bool(text) is value


def test_rejects_a_bad_boolean() -> None:
    with pytest.raises(SettingError, match="not a boolean"):
        parse_bool("maybe")


def test_lists_drop_blanks_and_duplicates_keeping_order() -> None:
    assert parse_list(" a, b,,a ,c ") == ("a", "b", "c")
    assert parse_list("") == ()


@pytest.mark.parametrize(
    ("text", "pair"),
    [
        (":8443", ("0.0.0.0", 8443)),
        ("127.0.0.1:9443", ("127.0.0.1", 9443)),
        ("[::1]:80", ("::1", 80)),
    ],
)
def test_parses_bind_addresses(text: str, pair: tuple[str, int]) -> None:
    assert parse_bind(text) == pair


@pytest.mark.parametrize("text", ["8443", "host:port", ":70000", ""], ids=repr)
def test_rejects_bad_bind_addresses(text: str) -> None:
    with pytest.raises(SettingError):
        parse_bind(text)


def test_an_empty_variable_counts_as_unset() -> None:
    assert env("X", "d", environ={"X": ""}) == "d"
    assert env("X", "d", environ={"X": "v"}) == "v"
