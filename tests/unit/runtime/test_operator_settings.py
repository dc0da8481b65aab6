"""Operator settings: environment, flags overriding it, and a clear error for each bad value."""

from __future__ import annotations

import ast
import inspect
import itertools
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage_core.settings import SettingError
from moorage_operator import settings as settings_module
from moorage_operator.settings import OperatorSettings


def test_defaults_follow_the_spec() -> None:
    s = OperatorSettings.from_env_and_args([], environ={})
    assert s.watch_namespaces == ()
    assert s.leader_election is True
    assert s.reconcile_concurrency == 4
    assert s.resync_period == 36000.0
    assert s.metrics_bind == ("0.0.0.0", 8443)
    assert s.metrics_cert_dir is None
    assert s.pod_namespace == "moorage-system"
    assert s.pod_name
    assert s.kubeconfig is None
    assert s.log_format == "auto"
    assert s.log_level == "info"
    assert s.proxyrunner_image.startswith("moorage/proxyrunner:")
    assert s.registry_api_image.startswith("moorage/registry-api:")


def test_every_setting_is_read_from_the_environment(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("{}")
    s = OperatorSettings.from_env_and_args(
        [],
        environ={
            "WATCH_NAMESPACES": " a, b ,a,,c",
            "LEADER_ELECTION": "false",
            "RECONCILE_CONCURRENCY": "8",
            "RESYNC_PERIOD": "1h30m",
            "PROXYRUNNER_IMAGE": "registry.example/proxy:1.2",
            "REGISTRY_API_IMAGE": "registry.example/api:1.2",
            "LOG_FORMAT": "JSON",
            "LOG_LEVEL": "Debug",
            "METRICS_BIND": "127.0.0.1:9443",
            "METRICS_CERT_DIR": str(tmp_path),
            "POD_NAMESPACE": "ops",
            "POD_NAME": "moorage-operator-7d9f-abcde",
            "KUBECONFIG": str(kubeconfig),
        },
    )
    assert s == OperatorSettings(
        watch_namespaces=("a", "b", "c"),
        leader_election=False,
        reconcile_concurrency=8,
        resync_period=5400.0,
        proxyrunner_image="registry.example/proxy:1.2",
        registry_api_image="registry.example/api:1.2",
        log_format="json",
        log_level="debug",
        metrics_bind=("127.0.0.1", 9443),
        metrics_cert_dir=tmp_path,
        pod_namespace="ops",
        pod_name="moorage-operator-7d9f-abcde",
        kubeconfig=str(kubeconfig),
    )


def test_flags_override_the_environment() -> None:
    s = OperatorSettings.from_env_and_args(
        ["--reconcile-concurrency", "2", "--watch-namespaces=x", "--leader-election=true"],
        environ={"RECONCILE_CONCURRENCY": "8", "WATCH_NAMESPACES": "a,b", "LEADER_ELECTION": "0"},
    )
    assert (s.reconcile_concurrency, s.watch_namespaces, s.leader_election) == (2, ("x",), True)


def test_an_empty_variable_counts_as_unset() -> None:
    s = OperatorSettings.from_env_and_args(
        [], environ={"RECONCILE_CONCURRENCY": "", "POD_NAMESPACE": ""}
    )
    assert (s.reconcile_concurrency, s.pod_namespace) == (4, "moorage-system")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("WATCH_NAMESPACES", "a,Not_A_Namespace", "not a namespace name"),
        ("WATCH_NAMESPACES", "a," + "x" * 64, "not a namespace name"),
        ("LEADER_ELECTION", "maybe", "not a boolean"),
        ("RECONCILE_CONCURRENCY", "four", "not a whole number"),
        ("RECONCILE_CONCURRENCY", "0", "out of range"),
        ("RECONCILE_CONCURRENCY", "1001", "out of range"),
        ("RESYNC_PERIOD", "soon", "not a duration"),
        ("RESYNC_PERIOD", "0s", "longer than zero"),
        ("PROXYRUNNER_IMAGE", "an image", "not an image reference"),
        ("REGISTRY_API_IMAGE", "a\tb", "not an image reference"),
        ("LOG_FORMAT", "xml", "not one of json, console, auto"),
        ("LOG_LEVEL", "verbose", "not one of debug"),
        ("METRICS_BIND", "8443", "not HOST:PORT"),
        ("METRICS_BIND", ":https", "no numeric port"),
        ("METRICS_BIND", ":70000", "port must be 0-65535"),
        ("METRICS_CERT_DIR", "/nonexistent/certs", "not a directory"),
        ("POD_NAMESPACE", "Moorage", "not a namespace name"),
        ("POD_NAME", "x" * 254, "1-253 characters"),
        ("KUBECONFIG", "/nonexistent/kubeconfig", "not a file"),
    ],
)
def test_a_bad_value_is_rejected_naming_the_setting(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(SettingError) as caught:
        OperatorSettings.from_env_and_args([], environ={variable: value})
    text = str(caught.value)
    assert text.startswith(f"{variable} (--{variable.lower().replace('_', '-')}): ")
    assert message in text


def test_a_bad_flag_is_rejected_naming_the_setting() -> None:
    with pytest.raises(SettingError, match=r"^RESYNC_PERIOD \(--resync-period\): "):
        OperatorSettings.from_env_and_args(["--resync-period", "-5"], environ={})


def test_an_unknown_flag_is_refused() -> None:
    with pytest.raises(SystemExit):
        OperatorSettings.from_env_and_args(["--no-such-flag"], environ={})


def test_every_field_has_an_environment_variable_a_flag_and_a_docstring() -> None:
    specs = {spec.field: spec for spec in settings_module._SPECS}
    assert set(specs) == {f.name for f in fields(OperatorSettings)}
    for name, spec in specs.items():
        assert spec.env == name.upper()
        assert spec.flag == name.replace("_", "-")
    tree = ast.parse(inspect.getsource(OperatorSettings))
    body = tree.body[0].body  # type: ignore[attr-defined]
    documented = {
        stmt.target.id
        for stmt, following in itertools.pairwise(body)
        if isinstance(stmt, ast.AnnAssign)
        and isinstance(stmt.target, ast.Name)
        and isinstance(following, ast.Expr)
        and isinstance(following.value, ast.Constant)
        and "Default" in str(following.value.value)
    }
    assert documented == set(specs), "each field needs a docstring stating its default"


@given(st.text(max_size=12))
def test_concurrency_parsing_never_fails_with_anything_but_a_setting_error(text: str) -> None:
    outcome = _parse_or_error({"RECONCILE_CONCURRENCY": text})
    if isinstance(outcome, str):
        assert outcome.startswith("RECONCILE_CONCURRENCY")
    else:
        assert 1 <= outcome.reconcile_concurrency <= 1000


@given(st.text(alphabet="abcXYZ-_,. 0123", max_size=30))
def test_namespace_lists_parse_to_valid_names_or_fail_clearly(text: str) -> None:
    outcome = _parse_or_error({"WATCH_NAMESPACES": text})
    if isinstance(outcome, str):
        assert outcome.startswith("WATCH_NAMESPACES")
    else:
        assert all(ns and ns == ns.strip().lower() for ns in outcome.watch_namespaces)


def _parse_or_error(environ: dict[str, str]) -> OperatorSettings | str:
    """The settings, or the message of the SettingError (any other exception escapes)."""
    try:
        return OperatorSettings.from_env_and_args([], environ=environ)
    except SettingError as exc:
        return str(exc)
