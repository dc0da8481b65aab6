"""`moorage-proxyrunner run --config` (the in-cluster start-up) that cannot start names what to
change and exits — the RunConfig, the credentials, the apiserver — and SIGTERM ends it while it
waits for the apiserver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from testkit.commands import (
    assert_clean_failure,
    assert_clean_stop,
    run_command,
    terminate_when,
    unreachable_kubeconfig,
)

pytestmark = pytest.mark.e2e

PROXY = "moorage_proxyrunner"
RUNCONFIG = {
    "schema_version": "moorage/v1",
    "name": "time",
    "namespace": "ns",
    "owner": {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPServer",
        "name": "time",
        "uid": "u",
    },
    "image": "ghcr.io/x/time:1",
    "port": 9090,
}


@pytest.fixture
def runconfig(tmp_path: Path) -> Path:
    path = tmp_path / "runconfig.json"
    path.write_text(json.dumps(RUNCONFIG))
    return path


def test_a_missing_runconfig_names_config(tmp_path: Path) -> None:
    outcome = run_command(PROXY, "run", "--config", str(tmp_path / "absent.json"))
    assert_clean_failure(outcome, code=2, setting='"--config"', problem="cannot read")


def test_an_invalid_runconfig_names_config(tmp_path: Path) -> None:
    path = tmp_path / "runconfig.json"
    path.write_text(json.dumps({**RUNCONFIG, "port": "many"}))
    outcome = run_command(PROXY, "run", "--config", str(path))
    assert_clean_failure(outcome, code=2, setting='"--config"', problem=str(path))


def test_a_kubeconfig_that_cannot_be_loaded_names_kubeconfig(
    runconfig: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("clusters: [unclosed")
    outcome = run_command(PROXY, "run", "--config", str(runconfig), "--kubeconfig", str(broken))
    assert_clean_failure(
        outcome,
        code=2,
        setting="KUBECONFIG / --kubeconfig",
        problem="cannot load Kubernetes credentials",
    )


def test_no_credentials_at_all_names_kubeconfig(runconfig: Path, tmp_path: Path) -> None:
    # In a pod without its service account token, and no kubeconfig to fall back on.
    outcome = run_command(
        PROXY,
        "run",
        "--config",
        str(runconfig),
        env={"HOME": str(tmp_path), "KUBERNETES_SERVICE_HOST": "10.0.0.1"},
    )
    assert_clean_failure(
        outcome, code=2, setting="KUBECONFIG / --kubeconfig", problem="no Kubernetes credentials"
    )


def test_an_unreachable_apiserver_ends_the_startup_window(runconfig: Path, tmp_path: Path) -> None:
    outcome = run_command(
        PROXY,
        "run",
        "--config",
        str(runconfig),
        "--kubeconfig",
        str(unreachable_kubeconfig(tmp_path)),
        "--startup-timeout",
        "1s",
    )
    assert_clean_failure(
        outcome,
        code=1,
        setting="STARTUP_TIMEOUT / --startup-timeout",
        problem="did not answer within 1s",
    )


def test_sigterm_while_waiting_for_the_apiserver_exits_within_the_drain_timeout(
    runconfig: Path, tmp_path: Path
) -> None:
    outcome, waited = terminate_when(
        PROXY,
        "run",
        "--config",
        str(runconfig),
        "--kubeconfig",
        str(unreachable_kubeconfig(tmp_path)),
        "--drain-timeout",
        "3",
        ready="apiserver_waiting",
    )
    assert_clean_stop(outcome, waited, within=3.0, event="stopped_during_startup")
