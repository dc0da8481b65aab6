"""The address other replicas reach this one at (`--advertise-address`,
`MOORAGE_ADVERTISE_ADDRESS`, else `$POD_IP:<port>`, else loopback): chosen in that order, checked
as `host:port`, and refused with the setting named."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from moorage_api.runconfig import load_runconfig
from moorage_core.settings import SettingError
from moorage_proxyrunner.__main__ import build_parser, settings_from, split_command
from moorage_proxyrunner.config.settings import (
    ProxyRunnerSettings,
    advertise_address_from,
    parse_advertise_address,
)
from moorage_proxyrunner.startup.cluster import (
    ClusterOptions,
    build_proxy_settings,
    options_from_args,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.7:8080", "10.0.0.7:8080"),
        ("proxy-0.mcp.team.svc.cluster.local:8080", "proxy-0.mcp.team.svc.cluster.local:8080"),
        ("[fd00::7]:8080", "[fd00::7]:8080"),
        (" localhost:080 ", "localhost:80"),
    ],
)
def test_a_host_and_port_is_an_address(text: str, expected: str) -> None:
    assert parse_advertise_address(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "10.0.0.7",
        ":8080",
        "10.0.0.7:0",
        "10.0.0.7:65536",
        "10.0.0.7:http",
        "fd00::7:8080",
        "[fd00::7:8080",
        "[not-v6]:8080",
        "-bad-.example:80",
        "a b:80",
        "http://10.0.0.7:8080",
    ],
)
def test_anything_else_is_refused_naming_the_setting(text: str) -> None:
    with pytest.raises(SettingError, match="MOORAGE_ADVERTISE_ADDRESS / --advertise-address"):
        parse_advertise_address(text)


def test_the_flag_wins_then_the_variable_then_the_pod_ip_then_loopback() -> None:
    env = {"MOORAGE_ADVERTISE_ADDRESS": "10.0.0.2:81", "POD_IP": "10.0.0.3"}
    assert advertise_address_from("10.0.0.1:80", port=9, environ=env) == "10.0.0.1:80"
    assert advertise_address_from(None, port=9, environ=env) == "10.0.0.2:81"
    assert advertise_address_from(None, port=9, environ={"POD_IP": "10.0.0.3"}) == "10.0.0.3:9"
    assert advertise_address_from(None, port=9, environ={"POD_IP": "fd00::3"}) == "[fd00::3]:9"
    assert advertise_address_from(None, port=9, environ={}) == "127.0.0.1:9"
    with pytest.raises(SettingError):
        advertise_address_from(None, port=9, environ={"MOORAGE_ADVERTISE_ADDRESS": "nope"})


def test_settings_default_to_loopback_at_their_port() -> None:
    assert ProxyRunnerSettings(port=9000).advertise_address == "127.0.0.1:9000"
    given = ProxyRunnerSettings(port=9000, advertise_address="10.0.0.1:9000")
    assert given.advertise_address == "10.0.0.1:9000"


def _local(argv: list[str]) -> argparse.Namespace:
    options, _ = split_command(argv)
    parser, _ = build_parser()
    return parser.parse_args(options)


def test_run_local_takes_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOORAGE_ADVERTISE_ADDRESS", raising=False)
    monkeypatch.setenv("POD_IP", "10.1.2.3")
    args = _local(["run", "--local", "--port", "9100", "--", "server"])
    assert settings_from(args).advertise_address == "10.1.2.3:9100"
    args = _local(["run", "--local", "--advertise-address", "[::1]:9100", "--", "server"])
    assert settings_from(args).advertise_address == "[::1]:9100"
    with pytest.raises(SettingError):
        settings_from(_local(["run", "--local", "--advertise-address", "x", "--", "server"]))


RUNCONFIG = {
    "schema_version": "moorage/v1",
    "name": "time",
    "namespace": "team-a",
    "image": "ghcr.io/example/time:1",
    "transport": "stdio",
    "port": 9090,
}


def test_in_a_cluster_the_pod_ip_and_the_runconfigs_port_are_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MOORAGE_ADVERTISE_ADDRESS", raising=False)
    runconfig = load_runconfig(json.dumps(RUNCONFIG))
    options = options_from_args(argparse.Namespace(config=None))
    settings = build_proxy_settings(runconfig, options, environ={"POD_IP": "10.4.0.9"})
    assert settings.advertise_address == "10.4.0.9:9090"
    flagged = options_from_args(argparse.Namespace(config=None, advertise_address="10.9.9.9:1"))
    assert build_proxy_settings(runconfig, flagged, environ={}).advertise_address == "10.9.9.9:1"
    monkeypatch.setenv("MOORAGE_ADVERTISE_ADDRESS", "bad")
    with pytest.raises(SettingError):
        options_from_args(argparse.Namespace(config=None))
    assert ClusterOptions(config=Path("x")).advertise_address is None
