"""The registry API's settings: flags, environment, defaults and errors naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage_core.settings import SettingError
from moorage_registryserver.settings import RegistryServerSettings, parse_settings


def test_defaults() -> None:
    assert parse_settings(["--data-dir", "/data"], environ={}) == RegistryServerSettings(
        data_dir=Path("/data")
    )


def test_environment_and_flags_with_flags_winning() -> None:
    settings = parse_settings(
        ["--port", "9000", "--log-level", "DEBUG"],
        environ={
            "REGISTRY_DATA_DIR": "/d",
            "REGISTRY_API_PORT": "1",
            "REGISTRY_API_HOST": "127.0.0.1",
            "REGISTRY_POLL_INTERVAL": "500ms",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "",
        },
    )
    assert settings == RegistryServerSettings(
        data_dir=Path("/d"),
        host="127.0.0.1",
        port=9000,
        poll_interval=0.5,
        log_format="json",
        log_level="debug",
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param([], "REGISTRY_DATA_DIR (--data-dir): required", id="no-data-dir"),
        pytest.param(["--data-dir", "d", "--port", "x"], "REGISTRY_API_PORT (--port)", id="port"),
        pytest.param(["--data-dir", "d", "--port", "70000"], "0-65535", id="port-range"),
        pytest.param(
            ["--data-dir", "d", "--poll-interval", "0s"], "longer than zero", id="interval-zero"
        ),
        pytest.param(
            ["--data-dir", "d", "--poll-interval", "soon"], "REGISTRY_POLL_INTERVAL", id="interval"
        ),
        pytest.param(["--data-dir", "d", "--log-format", "xml"], "LOG_FORMAT", id="log-format"),
    ],
)
def test_bad_settings_name_the_setting(argv: list[str], message: str) -> None:
    with pytest.raises(SettingError) as caught:
        parse_settings(argv, environ={})
    assert message in str(caught.value)
