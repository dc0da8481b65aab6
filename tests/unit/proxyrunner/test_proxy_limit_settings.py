"""The limits reach the proxy from flags or, in a cluster, from the container's environment."""

from __future__ import annotations

import argparse

import pytest

from moorage_core.settings import SettingError
from moorage_proxyrunner.__main__ import build_parser, settings_from
from moorage_proxyrunner.config.limits import Limits, limits_from
from moorage_proxyrunner.startup.cluster import options_from_args


def parse(argv: list[str]) -> argparse.Namespace:
    parser, _ = build_parser()
    return parser.parse_args(["run", "--local", *argv])


def test_defaults_apply_when_nothing_is_set() -> None:
    assert limits_from(parse([]), environ={}) == Limits()


def test_flags_win_over_the_environment() -> None:
    args = parse(["--request-timeout", "2m", "--max-sessions", "7"])
    limits = limits_from(args, environ={"REQUEST_TIMEOUT": "5s", "QUEUE_MAX_BYTES": "65536"})
    assert limits.request_timeout == 120.0
    assert limits.max_sessions == 7
    assert limits.queue_max_bytes == 65536


def test_resumption_can_be_turned_off() -> None:
    assert limits_from(parse(["--resume-window", "0"]), environ={}).resume_window == 0
    assert limits_from(parse([]), environ={"RESUME_WINDOW": "32"}).resume_window == 32


def test_local_settings_carry_the_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_INFLIGHT_PER_SESSION", "3")
    settings = settings_from(parse(["--header-timeout", "5s"]))
    assert settings.limits.header_timeout == 5.0
    assert settings.limits.max_inflight_per_session == 3


def test_cluster_options_read_the_environment_the_deployment_sets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAX_SESSIONS_PER_SUBJECT", "4")
    options = options_from_args(argparse.Namespace(config=None))
    assert options.limits.max_sessions_per_subject == 4


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        ("MAX_SESSIONS", "0", "MAX_SESSIONS \\(--max-sessions\\)"),
        ("QUEUE_MAX_BYTES", "100", "QUEUE_MAX_BYTES"),
        ("REQUEST_TIMEOUT", "soon", "REQUEST_TIMEOUT"),
        ("RESUME_WINDOW", "-1", "RESUME_WINDOW \\(--resume-window\\)"),
    ],
    ids=["zero-sessions", "tiny-queue", "bad-duration", "negative-window"],
)
def test_unusable_values_are_refused_naming_the_setting(
    name: str, value: str, complaint: str
) -> None:
    with pytest.raises(SettingError, match=complaint):
        limits_from(parse([]), environ={name: value})
