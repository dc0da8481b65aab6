"""The MCPRegistry controller's settings: defaults, environment, and errors naming the variable."""

from __future__ import annotations

import pytest

from moorage_api.mcpregistry import SyncPolicy
from moorage_core.backoff import Backoff
from moorage_core.settings import SettingError
from moorage_operator.registrysettings import RegistrySettings
from moorage_operator.wiring.mcpregistries import source_config_map_index_values


def test_defaults() -> None:
    settings = RegistrySettings.from_env(api_image="img", environ={})
    assert settings == RegistrySettings(api_image="img")
    assert settings.git_timeout == 120.0
    assert settings.sync_interval_override is None
    assert settings.backoff == Backoff(base=10.0, cap=600.0)
    assert settings.interval(SyncPolicy(interval="1h30m")) == 5400.0


def test_environment() -> None:
    settings = RegistrySettings.from_env(
        api_image="img",
        environ={
            "REGISTRY_GIT_TIMEOUT": "30s",
            "REGISTRY_SYNC_INTERVAL_OVERRIDE": "2s",
            "REGISTRY_RETRY_BASE": "1s",
            "REGISTRY_RETRY_CAP": "1m",
        },
    )
    assert settings == RegistrySettings(
        api_image="img",
        git_timeout=30.0,
        sync_interval_override=2.0,
        backoff=Backoff(base=1.0, cap=60.0),
    )
    assert settings.interval(SyncPolicy(interval="6h")) == 2.0


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        pytest.param({"REGISTRY_GIT_TIMEOUT": "soon"}, "REGISTRY_GIT_TIMEOUT: ", id="timeout"),
        pytest.param(
            {"REGISTRY_SYNC_INTERVAL_OVERRIDE": "0s"},
            "REGISTRY_SYNC_INTERVAL_OVERRIDE: '0s' must be longer than zero",
            id="override-zero",
        ),
        pytest.param(
            {"REGISTRY_RETRY_BASE": "1m", "REGISTRY_RETRY_CAP": "10s"},
            "REGISTRY_RETRY_CAP: must be at least REGISTRY_RETRY_BASE (60s)",
            id="cap-below-base",
        ),
    ],
)
def test_bad_values_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingError) as caught:
        RegistrySettings.from_env(api_image="img", environ=environ)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("registry", "values"),
    [
        pytest.param(
            {
                "metadata": {"namespace": "ns"},
                "spec": {"source": {"type": "configMap", "configMap": {"name": "cm"}}},
            },
            ["ns/cm"],
            id="configmap",
        ),
        pytest.param(
            {
                "metadata": {"namespace": "ns"},
                "spec": {"source": {"type": "git", "git": {"repository": "file:///r"}}},
            },
            [],
            id="git",
        ),
        pytest.param({"metadata": {}}, [], id="no-spec"),
    ],
)
def test_registries_are_indexed_by_their_source_configmap(
    registry: dict[str, object], values: list[str]
) -> None:
    assert source_config_map_index_values(registry) == values
