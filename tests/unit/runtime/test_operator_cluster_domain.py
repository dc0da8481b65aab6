"""CLUSTER_DOMAIN: the DNS domain under which the proxies accept their Service's names."""

from __future__ import annotations

import pytest

from moorage_core.settings import SettingError
from moorage_operator.settings import OperatorSettings


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", "cluster.local"), ("corp.internal", "corp.internal"), ("K8s.Example.", "k8s.example")],
    ids=["default", "custom", "normalised"],
)
def test_the_cluster_domain_is_read_from_the_environment(value: str, expected: str) -> None:
    settings = OperatorSettings.from_env_and_args([], environ={"CLUSTER_DOMAIN": value})
    assert settings.cluster_domain == expected


@pytest.mark.parametrize(
    "value", ["cluster local", "-bad.example", "a..b", "x" * 64 + ".local"], ids=str.__len__
)
def test_a_cluster_domain_that_is_not_a_dns_name_is_refused_naming_the_setting(value: str) -> None:
    with pytest.raises(SettingError, match=r"CLUSTER_DOMAIN.*not a DNS domain"):
        OperatorSettings.from_env_and_args([], environ={"CLUSTER_DOMAIN": value})
