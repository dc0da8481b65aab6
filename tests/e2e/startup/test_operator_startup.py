"""`moorage-operator` without a usable apiserver names what to change and exits; SIGTERM ends it
while it waits. (Failures after the apiserver answered are in tests/integration/startup.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from testkit.commands import (
    assert_clean_failure,
    assert_clean_stop,
    run_command,
    terminate_when,
    unreachable_kubeconfig,
)

from moorage_operator.__main__ import DRAIN_TIMEOUT

pytestmark = pytest.mark.e2e

OPERATOR = "moorage_operator"


def test_a_kubeconfig_that_cannot_be_loaded_names_kubeconfig(tmp_path: Path) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("apiVersion: v1\nkind: Config\ncurrent-context: nowhere\n")
    outcome = run_command(OPERATOR, "--kubeconfig", str(broken))
    assert_clean_failure(
        outcome,
        code=2,
        setting="KUBECONFIG / --kubeconfig",
        problem="cannot load Kubernetes credentials",
    )
    assert "nowhere" in outcome.output


def test_a_kubeconfig_that_does_not_exist_names_kubeconfig(tmp_path: Path) -> None:
    outcome = run_command(OPERATOR, env={"KUBECONFIG": str(tmp_path / "absent")})
    assert_clean_failure(
        outcome, code=2, setting="KUBECONFIG (--kubeconfig)", problem="is not a file"
    )


def test_no_in_cluster_credentials_and_no_kubeconfig_names_kubeconfig(tmp_path: Path) -> None:
    outcome = run_command(
        OPERATOR, env={"HOME": str(tmp_path), "KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    )
    assert_clean_failure(
        outcome, code=2, setting="KUBECONFIG / --kubeconfig", problem="no Kubernetes credentials"
    )


def test_an_apiserver_that_never_answers_ends_the_startup_window(tmp_path: Path) -> None:
    outcome = run_command(
        OPERATOR,
        "--kubeconfig",
        str(unreachable_kubeconfig(tmp_path)),
        env={"STARTUP_TIMEOUT": "1s"},
    )
    assert_clean_failure(
        outcome,
        code=1,
        setting="STARTUP_TIMEOUT / --startup-timeout",
        problem="did not answer within 1s",
    )


def test_sigterm_while_waiting_for_the_apiserver_exits_within_the_drain_timeout(
    tmp_path: Path,
) -> None:
    outcome, waited = terminate_when(
        OPERATOR,
        "--kubeconfig",
        str(unreachable_kubeconfig(tmp_path)),
        ready="apiserver_waiting",
    )
    assert_clean_stop(outcome, waited, within=DRAIN_TIMEOUT, event="stopped_during_startup")
