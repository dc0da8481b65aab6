"""The shared setting parsers for choices, directories and positive durations."""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage_core.settings import (
    SettingError,
    parse_choice,
    parse_directory,
    parse_positive_duration,
)


def test_choice_accepts_options_case_insensitively() -> None:
    parse = parse_choice(("json", "console"))
    assert parse(" JSON ") == "json"
    with pytest.raises(SettingError, match="is not one of json, console"):
        parse("xml")


def test_directory_must_exist(tmp_path: Path) -> None:
    assert parse_directory(f" {tmp_path} ") == tmp_path
    with pytest.raises(SettingError, match="is not a directory"):
        parse_directory(str(tmp_path / "missing"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(SettingError, match="is not a directory"):
        parse_directory(str(tmp_path / "file"))


@pytest.mark.parametrize(("text", "seconds"), [("2s", 2.0), ("250ms", 0.25), ("1.5", 1.5)])
def test_positive_durations(text: str, seconds: float) -> None:
    assert parse_positive_duration(text) == seconds


@pytest.mark.parametrize("text", ["0s", "0", "-1"])
def test_zero_or_negative_durations_are_refused(text: str) -> None:
    with pytest.raises(SettingError):
        parse_positive_duration(text)
